//! `authkeys admin nats-config`: NATS as a network that is not trusted (SPEC §6). Writes a
//! nats-server `authorization` block with one nkey user per role (command, project, timers,
//! api, auditor, and one per registrar), each with the least permissions of
//! [`authkeys_protocol::access`], and one seed file per role (`<role>.nk`, mode 0600). Every
//! role then connects with `--nats-auth DIR`.
//!
//! Nothing is overwritten without `--force`, and nothing is written unless everything can be:
//! the files are checked first.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use authkeys_protocol::access::{Permissions, RegistrarName, Role};

/// The config file's name in the folder.
pub const CONFIG_FILE: &str = "nats-server.conf";

/// What was written.
#[derive(Debug)]
pub struct Written {
    /// The nats-server config.
    pub config: PathBuf,
    /// Each role with its public nkey.
    pub users: Vec<(Role, String)>,
}

/// Writes the config and one seed per role into `out` (created 0700 if missing).
pub fn write(out: &Path, registrars: &[RegistrarName], force: bool) -> anyhow::Result<Written> {
    let mut roles: Vec<Role> = Role::SERVICES.to_vec();
    roles.push(Role::Auditor);
    let mut unique = registrars.to_vec();
    unique.sort();
    unique.dedup();
    roles.extend(unique.into_iter().map(Role::Registrar));

    let config = out.join(CONFIG_FILE);
    let seeds: Vec<PathBuf> = roles
        .iter()
        .map(|r| out.join(format!("{}.nk", r.name())))
        .collect();
    let existing = seeds
        .iter()
        .chain(std::iter::once(&config))
        .find(|p| p.exists());
    if let (false, Some(existing)) = (force, existing) {
        bail!(
            "{} exists; nothing was written (use --force to replace every file)",
            existing.display()
        );
    }
    create_private_dir(out)?;

    let mut users = Vec::new();
    let mut blocks = Vec::new();
    for (role, seed_path) in roles.iter().zip(&seeds) {
        let pair = nkeys::KeyPair::new_user();
        let seed = pair.seed().context("encode an nkey seed")?;
        write_private(seed_path, format!("{seed}\n").as_bytes())?;
        let public = pair.public_key();
        blocks.push(user_block(role, &public));
        users.push((role.clone(), public));
    }
    let text = format!(
        "# Written by `authkeys admin nats-config`: one nkey user per authkeys role, each with the\n\
         # least permissions it needs (SPEC §6). Anyone else may do nothing: no anonymous users.\n\
         # Start the server with this file and its own listen address, JetStream and store:\n\
         #   nats-server -c {CONFIG_FILE} -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats\n\
         authorization {{\n  users = [\n{}  ]\n}}\n",
        blocks.concat()
    );
    write_private(&config, text.as_bytes())?;
    Ok(Written { config, users })
}

/// One `users` entry.
fn user_block(role: &Role, public: &str) -> String {
    let Permissions {
        publish,
        subscribe,
        allow_responses,
    } = role.permissions();
    let list = |subjects: &[String]| {
        subjects
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut perms = vec![
        format!("publish: {{ allow: [{}] }}", list(&publish)),
        format!("subscribe: {{ allow: [{}] }}", list(&subscribe)),
    ];
    if allow_responses {
        perms.push("allow_responses: true".to_owned());
    }
    format!(
        "    # {}\n    {{ nkey: \"{public}\", permissions: {{ {} }} }}\n",
        role.name(),
        perms.join(", ")
    )
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("create {}", dir.display()))
}

/// Writes `bytes` to `path`, readable by its owner only (0600), replacing what is there.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    // A file that existed keeps its old mode through open(): set it.
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_user_per_role_with_private_seeds_and_never_overwrites_unasked() {
        use std::os::unix::fs::PermissionsExt as _;
        let r1 = RegistrarName::parse("r1").expect("valid");
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("nats");
        // A registrar named twice is admitted once.
        let written = write(&out, &[r1.clone(), r1], false).expect("writes");
        assert_eq!(
            written.users.len(),
            6,
            "4 services, the auditor, one registrar"
        );
        let conf = std::fs::read_to_string(&written.config).expect("config");
        for (role, public) in &written.users {
            assert!(conf.contains(public.as_str()), "{}", role.name());
            let seed = out.join(format!("{}.nk", role.name()));
            let mode = std::fs::metadata(&seed).expect("seed").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let before = std::fs::read(out.join("command.nk")).expect("seed");
        assert!(write(&out, &[], false).is_err());
        assert_eq!(std::fs::read(out.join("command.nk")).expect("seed"), before);
        write(&out, &[], true).expect("forced");
        assert_ne!(std::fs::read(out.join("command.nk")).expect("seed"), before);
    }
}
