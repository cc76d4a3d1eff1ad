"""The PyTorch side: learned prompts, the span head, the backbone's layer stack and the
network that ties them together. Nothing here imports spaCy."""
