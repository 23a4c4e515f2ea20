"""Authentication: who is this request? Every method ends in one Principal."""
