"""The gateway's own SQL database: users, groups, tokens, policy rules."""
