//! Identity: users, organizations, owner/member roles, magic links, invites, sessions and API keys (issue 3; nothing here yet).
