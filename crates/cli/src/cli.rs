//! The command line: every command, argument and environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Defendable's command-line client.
#[derive(Parser, Debug)]
#[command(
    name = "defendable",
    version,
    about = "Defendable's command-line client: organizations, keys, receipts, datasets, and offline verification",
    after_help = "Exit codes: 0 ok, 2 usage or refused request, 3 authentication, 4 verification failed, \
                  5 server or network (retry), 6 rate limit or quota (retry later).\n\
                  Sign in with `defendable login --email …`, or set DEFENDABLE_TOKEN (an API key) for scripts."
)]
pub struct Cli {
    /// API base URL.
    #[arg(
        long,
        env = "DEFENDABLE_API",
        global = true,
        default_value = "http://127.0.0.1:8080"
    )]
    pub api: String,
    /// Organization (slug or id) for commands that act on one; defaults to the one saved at login.
    #[arg(long, env = "DEFENDABLE_ORG", global = true)]
    pub org: Option<String>,
    /// Print one line of machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mail yourself a sign-in link, then paste the link (or its token) to start a session; or
    /// with --sso, sign in through your organization's identity provider in a browser on this
    /// machine.
    Login {
        /// Your email address (with --sso, its verified domain picks the organization; without
        /// it, --org names an organization with one connection).
        #[arg(long, required_unless_present = "sso")]
        email: Option<String>,
        /// Sign in with single sign-on: the browser comes back to a port on 127.0.0.1 that this
        /// command listens on, and the session is redeemed with a verifier only it holds.
        #[arg(long)]
        sso: bool,
        /// With --sso: accept an invite by signing in, instead of --email (needed where the
        /// organization requires single sign-on for your address); paste the invite link (or
        /// its token) when asked, so it never shows in the process list.
        #[arg(long, requires = "sso", conflicts_with = "email")]
        invite: bool,
        /// With --sso: print the sign-in URL without opening a browser.
        #[arg(long, requires = "sso")]
        no_browser: bool,
    },
    /// End the session on the server and forget it here.
    Logout,
    /// Show who the saved session or DEFENDABLE_TOKEN belongs to.
    Whoami,
    /// Your organizations.
    #[command(subcommand)]
    Orgs(Orgs),
    /// Members of an organization.
    #[command(subcommand)]
    Members(Members),
    /// Invitations to an organization.
    #[command(subcommand)]
    Invites(Invites),
    /// API keys of an organization (for CI and services).
    #[command(subcommand)]
    Keys(Keys),
    /// Receipts in an organization's chain.
    #[command(subcommand)]
    Receipts(Receipts),
    /// The organization's chain as a whole.
    #[command(subcommand)]
    Ledger(Ledger),
    /// The dataset catalog and verified downloads.
    #[command(subcommand)]
    Datasets(Datasets),
    /// Verify a share link, a share token, or a file (proof bundle, tlog-proof file, export or
    /// projection) locally: the hash from the body, the inclusion proof, the checkpoint's
    /// signature, and that the log extends the newest checkpoint this machine verified for it
    /// (exit 4 names both tree sizes when it does not).
    Verify {
        /// A share URL (https://…/share/TOKEN), a bare share token, or a file path.
        target: String,
        /// A verifier key (`name+keyid+base64`, as published in docs/receipts.md and every
        /// release) to trust instead of the server's list; repeat for several. Without it the
        /// `vkeys` file in the configuration directory is used, else the server's keys, pinned on
        /// first use.
        #[arg(long = "vkey")]
        vkeys: Vec<String>,
        /// Trust the keys the server serves now even though they drop every key pinned for it
        /// (after a key rotation you checked out of band).
        #[arg(long)]
        trust_new_keys: bool,
        /// A v1 Ed25519 public key (base64url, which may begin with `-`) for v1 bundles and
        /// exports; repeat for several.
        #[arg(long = "key", allow_hyphen_values = true)]
        keys: Vec<String>,
    },
    /// Print a completion script for a shell (bash, elvish, fish, powershell or zsh), e.g.
    /// `defendable completions bash > ~/.local/share/bash-completion/completions/defendable`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
}

/// `orgs`.
#[derive(Subcommand, Debug)]
pub enum Orgs {
    /// List the organizations you belong to, with your role.
    List,
    /// Create an organization you own.
    Create {
        /// URL name: lowercase letters, digits and dashes.
        #[arg(long)]
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
    },
}

/// A role in an organization.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Full control, including invites, API keys and roles.
    Owner,
    /// Uses the organization's receipts and datasets.
    Member,
}

impl Role {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
        }
    }

    /// The role as the API names it.
    pub fn view(self) -> defendable_identity::view::RoleView {
        match self {
            Role::Owner => defendable_identity::view::RoleView::Owner,
            Role::Member => defendable_identity::view::RoleView::Member,
        }
    }
}

/// `members`.
#[derive(Subcommand, Debug)]
pub enum Members {
    /// List members and roles.
    List,
    /// Change a member's role (owners). An organization always keeps one owner.
    SetRole {
        /// The member's email or user id.
        user: String,
        /// The new role.
        role: Role,
    },
    /// Remove a member (owners; anyone may remove themselves).
    Remove {
        /// The member's email or user id.
        user: String,
    },
}

/// `invites`.
#[derive(Subcommand, Debug)]
pub enum Invites {
    /// Invite an address; it receives a single-use link bound to it.
    Create {
        /// Who to invite.
        #[arg(long)]
        email: String,
        /// Their role on accepting.
        #[arg(long, value_enum, default_value_t = Role::Member)]
        role: Role,
    },
    /// List pending invites.
    List,
    /// Revoke a pending invite.
    Revoke {
        /// Invite id.
        id: String,
    },
}

/// `keys`.
#[derive(Subcommand, Debug)]
pub enum Keys {
    /// Create an API key; its secret is shown once.
    Create {
        /// A name that says where the key is used.
        #[arg(long)]
        name: String,
        /// When it stops working (RFC 3339).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List keys, revoked ones included (never their secrets).
    List,
    /// Revoke a key on every server at once.
    Revoke {
        /// Key id.
        id: String,
    },
}

/// `receipts`.
#[derive(Subcommand, Debug)]
pub enum Receipts {
    /// Record a receipt. Retries reuse one Idempotency-Key, so a receipt is recorded once.
    Record {
        /// Kind: dotted lowercase segments, e.g. `run` or `model.eval`.
        #[arg(long)]
        kind: String,
        /// JSON object anyone holding a share link may see: a file, or `-` for stdin.
        #[arg(long)]
        public: String,
        /// JSON object only members see (committed to by a salted digest): a file.
        #[arg(long)]
        private: Option<PathBuf>,
        /// Idempotency key (default: a fresh one, reused by this command's own retries).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// List receipts, oldest first.
    List {
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Start after this seq (the previous page's `next`).
        #[arg(long)]
        after: Option<u64>,
        /// Page size, 1–500.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one receipt, with its private part.
    Show {
        /// Receipt id (DCR-…).
        id: String,
    },
    /// Create a share link (or revoke every link of the receipt with --revoke).
    Share {
        /// Receipt id (DCR-…).
        id: String,
        /// Revoke the receipt's links instead.
        #[arg(long)]
        revoke: bool,
        /// Make the link stop working after this long (e.g. `7d`, `12h`; 60 s to 366 days).
        /// Without it the link works until revoked.
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "revoke")]
        expires_in: Option<std::time::Duration>,
    },
}

/// `ledger`.
#[derive(Subcommand, Debug)]
pub enum Ledger {
    /// Ask the server to verify every link of the chain and every node of the tree in storage.
    Verify,
    /// Fetch the organization's signed checkpoint and prove it consistent with the one saved on
    /// the last run (for cron: exit 0 when consistent, 4 when history was rewritten).
    Watch {
        /// A verifier key to trust instead of the server's list (see `verify --vkey`).
        #[arg(long = "vkey")]
        vkeys: Vec<String>,
        /// Trust served keys that drop every pinned key (see `verify --trust-new-keys`).
        #[arg(long)]
        trust_new_keys: bool,
    },
    /// Save the whole chain as JSON Lines ending in a signed checkpoint (check it with `verify`).
    Export {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `datasets`.
#[derive(Subcommand, Debug)]
pub enum Datasets {
    /// List the catalog.
    List {
        /// Text to find in slug, title or description.
        #[arg(long)]
        query: Option<String>,
    },
    /// Show one dataset.
    Show {
        /// Dataset slug.
        slug: String,
    },
    /// Download a dataset: one unit of quota, a progress bar, resume after interruption, and a
    /// BLAKE3 check against the catalog before the file gets its name.
    Download(DownloadArgs),
}

/// `datasets download`.
#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// Dataset slug.
    pub slug: String,
    /// Where to save it (default: the slug, in the current directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// How many times to resume a broken transfer before giving up (a later run resumes too).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
}
