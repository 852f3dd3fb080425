"""Training: the trainer that grows the student, optimizer state at a growth, the LR schedule."""
