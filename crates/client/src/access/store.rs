//! Where API keys and what accounts spent are kept: a redb file in the
//! client's state directory, committed before a key is handed out and
//! after every answer, so a crash loses neither a key nor a charge.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::policy::{SpendPolicy, Spending};

const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
const TELEGRAM_USERS: TableDefinition<i64, &[u8]> = TableDefinition::new("telegram_users");

/// One API key as stored: never its secret, only the secret's SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The public id (`key_` and 12 hex digits).
    pub id: String,
    /// What the operator called it.
    pub name: String,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// Unix seconds when it was made.
    pub created: u64,
    /// Unix seconds when it was revoked.
    pub revoked_at: Option<u64>,
    /// Its limits.
    pub policy: SpendPolicy,
    /// What it spent.
    pub spending: Spending,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("the API key store {path}: {what}: {reason}")]
pub struct StoreError {
    path: String,
    what: &'static str,
    reason: String,
}

/// The durable store.
pub struct AccountStore {
    db: Database,
    path: String,
}

impl std::fmt::Debug for AccountStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountStore")
            .field("path", &self.path)
            .finish()
    }
}

impl AccountStore {
    /// Whether `dir` holds a store.
    pub fn exists(dir: &Path) -> bool {
        dir.join("access.redb").exists()
    }

    /// Opens (or creates) `dir/access.redb`; `None` keeps everything in
    /// memory (embedded clients in tests).
    pub fn open(dir: Option<&Path>) -> Result<AccountStore, StoreError> {
        let path = dir.map(|d| d.join("access.redb"));
        let shown = path
            .as_ref()
            .map_or_else(|| "(in memory)".to_string(), |p| p.display().to_string());
        let fail = |what: &'static str| {
            let shown = shown.clone();
            move |e: &dyn std::fmt::Display| StoreError {
                path: shown,
                what,
                reason: e.to_string(),
            }
        };
        let db = match &path {
            Some(p) => {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| fail("create its directory")(&e))?;
                }
                Database::create(p).map_err(|e| match e {
                    redb::DatabaseError::DatabaseAlreadyOpen => StoreError {
                        path: shown.clone(),
                        what: "open",
                        reason: "another client process holds it: two clients with the same --name and --data-dir cannot both keep API keys; give this one its own --name".into(),
                    },
                    e => fail("open")(&e),
                })?
            }
            None => Database::builder()
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .map_err(|e| fail("open")(&e))?,
        };
        let tx = db.begin_write().map_err(|e| fail("begin")(&e))?;
        tx.open_table(KEYS).map_err(|e| fail("open keys")(&e))?;
        tx.open_table(TELEGRAM_USERS)
            .map_err(|e| fail("open users")(&e))?;
        tx.commit().map_err(|e| fail("commit")(&e))?;
        Ok(AccountStore { db, path: shown })
    }

    fn err(&self, what: &'static str, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.clone(),
            what,
            reason: e.to_string(),
        }
    }

    /// Every key and every Telegram user's spending.
    #[allow(clippy::type_complexity)]
    pub fn load(&self) -> Result<(Vec<KeyRecord>, Vec<(i64, Spending)>), StoreError> {
        let rx = self.db.begin_read().map_err(|e| self.err("read", e))?;
        let keys = rx.open_table(KEYS).map_err(|e| self.err("read keys", e))?;
        let mut out = Vec::new();
        for row in keys.iter().map_err(|e| self.err("read keys", e))? {
            let (_, v) = row.map_err(|e| self.err("read a key", e))?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| self.err("decode a key", e))?);
        }
        let users = rx
            .open_table(TELEGRAM_USERS)
            .map_err(|e| self.err("read users", e))?;
        let mut spent = Vec::new();
        for row in users.iter().map_err(|e| self.err("read users", e))? {
            let (k, v) = row.map_err(|e| self.err("read a user", e))?;
            let s = serde_json::from_slice(v.value()).map_err(|e| self.err("decode a user", e))?;
            spent.push((k.value(), s));
        }
        Ok((out, spent))
    }

    /// Writes a key, durably.
    pub fn put_key(&self, k: &KeyRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(k).map_err(|e| self.err("encode a key", e))?;
        let tx = self.db.begin_write().map_err(|e| self.err("write", e))?;
        {
            let mut t = tx.open_table(KEYS).map_err(|e| self.err("write", e))?;
            t.insert(k.id.as_str(), bytes.as_slice())
                .map_err(|e| self.err("write a key", e))?;
        }
        tx.commit().map_err(|e| self.err("commit", e))
    }

    /// Writes a Telegram user's spending, durably.
    pub fn put_user(&self, user: i64, s: &Spending) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(s).map_err(|e| self.err("encode a user", e))?;
        let tx = self.db.begin_write().map_err(|e| self.err("write", e))?;
        {
            let mut t = tx
                .open_table(TELEGRAM_USERS)
                .map_err(|e| self.err("write", e))?;
            t.insert(user, bytes.as_slice())
                .map_err(|e| self.err("write a user", e))?;
        }
        tx.commit().map_err(|e| self.err("commit", e))
    }
}

/// The operator's token: what `cocoon client keys` and the contract's
/// actions (withdraw, close, deposit) authenticate with once access is
/// restricted. Kept in a file only its owner may read; whoever can read
/// the file may act as the operator.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
    /// Where it is kept (`None`: in memory only).
    pub file: Option<PathBuf>,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("file", &self.file)
            .finish()
    }
}

impl AdminToken {
    /// Reads `dir/admin.token`, making it (mode 0600) if absent; `None`
    /// makes a token no one is told (operator actions then need no
    /// restriction to be off).
    pub fn open(dir: Option<&Path>) -> Result<AdminToken, std::io::Error> {
        let Some(dir) = dir else {
            return Ok(AdminToken {
                digest: sha256(super::keys::random_secret("cocoon-admin-").as_bytes()),
                file: None,
            });
        };
        let file = dir.join("admin.token");
        let token = match std::fs::read_to_string(&file) {
            Ok(t) if t.trim().len() >= 32 => t.trim().to_string(),
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} holds no usable token (fewer than 32 characters); remove it to have a new one made", file.display()),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                let t = super::keys::random_secret("cocoon-admin-");
                write_private(&file, &t)?;
                t
            }
            Err(e) => return Err(e),
        };
        Ok(AdminToken {
            digest: sha256(token.as_bytes()),
            file: Some(file),
        })
    }

    /// Whether `token` is this one.
    pub fn matches(&self, token: &str) -> bool {
        // Comparing digests: the time taken says nothing useful about the token.
        sha256(token.as_bytes()) == self.digest
    }
}

/// Writes a secret readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// SHA-256.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
