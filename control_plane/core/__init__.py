"""Business rules of the control plane, free of I/O: names, validation, errors, pagination."""
