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
use authkeys_protocol::nats::TLS_CA_FILE;

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

/// The server's certificate and key files `--tls` writes beside the CA (`ca.pem`).
pub const TLS_CERT_FILE: &str = "server-cert.pem";
/// The server's private key (0600).
pub const TLS_KEY_FILE: &str = "server-key.pem";
/// How long the generated certificates are valid.
const TLS_VALID_DAYS: i64 = 825;

/// Writes the config and one seed per role into `out` (created 0700 if missing); with `tls`, a
/// CA, a server certificate for `localhost` and 127.0.0.1/::1 and its key, and a config that
/// requires TLS (every role then trusts `ca.pem` from the same folder).
pub fn write(
    out: &Path,
    registrars: &[RegistrarName],
    force: bool,
    tls: bool,
) -> anyhow::Result<Written> {
    let mut roles: Vec<Role> = Role::SERVICES.to_vec();
    roles.push(Role::Operator);
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
    let tls_files: Vec<PathBuf> = [TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE]
        .iter()
        .map(|f| out.join(f))
        .collect();
    let existing = seeds
        .iter()
        .chain(std::iter::once(&config))
        .chain(tls_files.iter().filter(|_| tls))
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
    let tls_block = if tls {
        write_tls(out)?;
        // Absolute: nats-server reads these relative to its working directory.
        let dir = out
            .canonicalize()
            .with_context(|| format!("resolve {}", out.display()))?;
        let file = |name: &str| dir.join(name).display().to_string();
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 2\n}}\n",
            file(TLS_CERT_FILE),
            file(TLS_KEY_FILE),
        )
    } else {
        String::new()
    };
    let text = format!(
        "# Written by `authkeys admin nats-config`: one nkey user per authkeys role, each with the\n\
         # least permissions it needs (SPEC §6). Anyone else may do nothing: no anonymous users.\n\
         # Start the server with this file and its own listen address, JetStream and store:\n\
         #   nats-server -c {CONFIG_FILE} -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats\n\
         {tls_block}authorization {{\n  users = [\n{}  ]\n}}\n",
        blocks.concat()
    );
    write_private(&config, text.as_bytes())?;
    Ok(Written { config, users })
}

/// A CA (`ca.pem`) and a server certificate it signed for `localhost`, 127.0.0.1 and ::1
/// (`server-cert.pem`, `server-key.pem` 0600). The CA's key is not kept: nothing else is ever
/// signed with it.
fn write_tls(out: &Path) -> anyhow::Result<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let now = time::OffsetDateTime::now_utc();
    let until = now + time::Duration::days(TLS_VALID_DAYS);
    let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "authkeys NATS CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (ca.not_before, ca.not_after) = (now, until);
    let ca_key = KeyPair::generate().context("generate the CA key")?;
    let ca_cert = ca.self_signed(&ca_key).context("sign the CA")?;
    let issuer = Issuer::new(ca, ca_key);

    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let mut server = CertificateParams::new(names).context("server parameters")?;
    server
        .distinguished_name
        .push(DnType::CommonName, "authkeys NATS server");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    (server.not_before, server.not_after) = (now, until);
    let server_key = KeyPair::generate().context("generate the server key")?;
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .context("sign the server certificate")?;

    write_private(&out.join(TLS_CA_FILE), ca_cert.pem().as_bytes())?;
    write_private(&out.join(TLS_CERT_FILE), server_cert.pem().as_bytes())?;
    write_private(
        &out.join(TLS_KEY_FILE),
        server_key.serialize_pem().as_bytes(),
    )
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
        let written = write(&out, &[r1.clone(), r1], false, false).expect("writes");
        assert_eq!(
            written.users.len(),
            8,
            "5 services, the operator, the auditor, one registrar"
        );
        let conf = std::fs::read_to_string(&written.config).expect("config");
        for (role, public) in &written.users {
            assert!(conf.contains(public.as_str()), "{}", role.name());
            let seed = out.join(format!("{}.nk", role.name()));
            let mode = std::fs::metadata(&seed).expect("seed").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let before = std::fs::read(out.join("command.nk")).expect("seed");
        assert!(write(&out, &[], false, false).is_err());
        assert_eq!(std::fs::read(out.join("command.nk")).expect("seed"), before);
        write(&out, &[], true, false).expect("forced");
        assert_ne!(std::fs::read(out.join("command.nk")).expect("seed"), before);
    }
}
