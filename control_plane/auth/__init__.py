"""Authentication and authorization: API keys, passwords, JWTs, principals and their permissions."""
