"""Generated from proto/floe/v1 by scripts/gen_sdk.py. Do not edit."""
