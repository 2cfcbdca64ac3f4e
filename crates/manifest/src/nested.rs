//! Nested apps: a component whose `source` is another `membrane.toml`. The inner app is
//! folded into the outer one (its components named `outer.inner`), reached through the
//! interfaces its `[app] exports` names, and may hold only grants the outer app gives it.

use crate::app::{AppSpec, ManifestError, OnTrap};
use crate::grants::{DirGrant, DirMode, Grants};
use std::path::{Component as PathPart, Path, PathBuf};

/// How deep apps may nest; deeper is almost surely a manifest that includes itself.
const MAX_DEPTH: usize = 8;

impl AppSpec {
    /// Replaces every component whose source is a `.toml` by the components of that app.
    pub(crate) fn expand_nested(mut self, depth: usize) -> Result<AppSpec, ManifestError> {
        let nested: Vec<String> = self
            .components
            .iter()
            .filter(|(_, c)| c.source.extension().is_some_and(|e| e == "toml"))
            .map(|(name, _)| name.clone())
            .collect();
        for name in nested {
            let outer = self.components.remove(&name).expect("listed above");
            let key = format!("component.{name}.source");
            if depth >= MAX_DEPTH {
                return Err(self.invalid(
                    key,
                    format!("apps nest more than {MAX_DEPTH} deep"),
                    "check that no app includes itself",
                ));
            }
            if outer.digest.is_some() {
                return Err(self.invalid(
                    format!("component.{name}.digest"),
                    "a nested app has no single digest",
                    "pin the digests of its components in its own manifest",
                ));
            }
            let inner = AppSpec::load_at_depth(&outer.source, depth + 1)?;
            for (inner_name, component) in &inner.components {
                check_attenuation(&inner.file, inner_name, &component.grants, &self.file, &name, &outer.grants)?;
            }
            let rename = |n: &str| format!("{name}.{n}");
            // Links into the nested app go to the component that exports the interface.
            for (i, link) in self.links.iter_mut().enumerate() {
                if link.from == name {
                    return Err(ManifestError::Invalid {
                        file: self.file.clone(),
                        key: format!("link[{i}].from"),
                        message: format!("`{name}` is a nested app, which imports nothing from outside"),
                        fix: "link the inner app's components to each other in its own manifest".into(),
                    });
                }
                let exported = |target: &str| -> Result<String, ManifestError> {
                    inner
                        .app
                        .exports
                        .iter()
                        .find(|(iface, _)| same_interface_name(iface, &link.import))
                        .map(|(_, component)| rename(component))
                        .ok_or_else(|| ManifestError::Invalid {
                            file: self.file.clone(),
                            key: format!("link[{i}].{target}"),
                            message: format!("the nested app `{name}` does not export {}", link.import),
                            fix: format!(
                                "add \"{}\" = \"<component>\" to [app.exports] in {}",
                                link.import,
                                inner.file.display()
                            ),
                        })
                };
                if link.to == name {
                    link.to = exported("to")?;
                }
                if link.on_trap == OnTrap::Fallback(name.clone()) {
                    link.on_trap = OnTrap::Fallback(exported("on_trap")?);
                }
            }
            if self.app.entry.as_deref() == Some(name.as_str()) {
                return Err(self.invalid(
                    "app.entry",
                    format!("`{name}` is a nested app"),
                    "make a component of this app the entry",
                ));
            }
            for (inner_name, mut component) in inner.components {
                // Signatures the outer app requires hold inside the nested app too, unless
                // the inner app names its own signers.
                if component.trusted_keys.is_empty() {
                    component.trusted_keys = outer.trusted_keys.clone();
                }
                self.components.insert(rename(&inner_name), component);
            }
            for mut link in inner.links {
                link.from = rename(&link.from);
                link.to = rename(&link.to);
                if let OnTrap::Fallback(f) = &link.on_trap {
                    link.on_trap = OnTrap::Fallback(rename(f));
                }
                self.links.push(link);
            }
        }
        Ok(self)
    }
}

/// Interface names match ignoring the version, as links do.
fn same_interface_name(a: &str, b: &str) -> bool {
    a.split('@').next() == b.split('@').next()
}

/// An inner component may hold only what the outer app grants the nested app as a whole.
fn check_attenuation(
    inner_file: &Path,
    inner_name: &str,
    inner: &Grants,
    outer_file: &Path,
    outer_name: &str,
    outer: &Grants,
) -> Result<(), ManifestError> {
    let refuse = |key: String, what: String| ManifestError::Invalid {
        file: inner_file.to_owned(),
        key: format!("component.{inner_name}.grants.{key}"),
        message: format!(
            "grants {what}, which {} does not grant `{outer_name}`; an inner app can only narrow what it is given",
            outer_file.display()
        ),
        fix: format!("grant it to [component.{outer_name}] in {} or remove it here", outer_file.display()),
    };
    for (i, dir) in inner.dirs.iter().enumerate() {
        if !outer.dirs.iter().any(|o| dir_within(dir, o)) {
            let mode = if dir.mode == DirMode::Ro { "read-only" } else { "read-write" };
            return Err(refuse(format!("dirs[{i}]"), format!("{} {mode}", dir.host.display())));
        }
    }
    for (name, value) in &inner.env {
        if outer.env.get(name) != Some(value) {
            return Err(refuse(format!("env.{name}"), format!("environment variable {name}")));
        }
    }
    let sockets = [
        ("allow_tcp", &inner.allow_tcp, &outer.allow_tcp, "TCP connections to"),
        ("allow_tcp_bind", &inner.allow_tcp_bind, &outer.allow_tcp_bind, "a TCP listener on"),
        ("allow_udp", &inner.allow_udp, &outer.allow_udp, "UDP datagrams to"),
        ("allow_udp_bind", &inner.allow_udp_bind, &outer.allow_udp_bind, "a UDP socket bound on"),
    ];
    for (key, inner_rules, outer_rules, what) in sockets {
        if let Some((i, rule)) = inner_rules.iter().enumerate().find(|(_, r)| !outer_rules.iter().any(|o| o.covers(r)))
        {
            return Err(refuse(format!("{key}[{i}]"), format!("{what} {rule}")));
        }
    }
    for (i, rule) in inner.outbound_http.iter().enumerate() {
        if !outer.outbound_http.contains(rule) {
            return Err(refuse(format!("outbound_http[{i}]"), format!("outbound HTTP to {rule}")));
        }
    }
    for (i, grant) in inner.keyvalue.iter().enumerate() {
        let covered = outer
            .keyvalue
            .iter()
            .any(|o| o.bucket == grant.bucket && (o.access.can_write() || !grant.access.can_write()));
        if !covered {
            return Err(refuse(format!("keyvalue[{i}]"), format!("bucket {:?} ({:?})", grant.bucket, grant.access)));
        }
    }
    if inner.allow_dns && !outer.allow_dns {
        return Err(refuse("allow_dns".into(), "DNS lookups".into()));
    }
    if inner.stdin && !outer.stdin {
        return Err(refuse("stdin".into(), "standard input".into()));
    }
    if inner.otel && !outer.otel {
        return Err(refuse("otel".into(), "spans of its own (wasi:otel)".into()));
    }
    Ok(())
}

/// Whether `inner` is the same directory as `outer` or below it, with no more rights.
fn dir_within(inner: &DirGrant, outer: &DirGrant) -> bool {
    let rights = outer.mode == DirMode::Rw || inner.mode == DirMode::Ro;
    rights && normalize(&inner.host).starts_with(normalize(&outer.host))
}

/// `a/./b/../c` as `a/c`, without touching the filesystem (the paths may not exist yet
/// when a manifest is checked).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            PathPart::CurDir => {}
            PathPart::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_grants_only_narrow() {
        let grants = |tcp_bind: &str, udp: &str| Grants {
            allow_tcp_bind: vec![tcp_bind.parse().unwrap()],
            allow_udp: vec![udp.parse().unwrap()],
            ..Grants::default()
        };
        let check = |inner: &Grants, outer: &Grants| {
            check_attenuation(Path::new("in.toml"), "c", inner, Path::new("out.toml"), "n", outer)
        };
        let outer = grants("127.0.0.0/8:8000-8999", "10.0.0.0/8");
        check(&grants("127.0.0.1:8080", "10.1.1.1:53"), &outer).unwrap();
        let wider = check(&grants("127.0.0.1:9000", "10.1.1.1:53"), &outer).unwrap_err().to_string();
        assert!(wider.contains("allow_tcp_bind[0]") && wider.contains("127.0.0.1:9000"), "{wider}");
        let wider = check(&grants("127.0.0.1:8080", "11.0.0.1:53"), &outer).unwrap_err().to_string();
        assert!(wider.contains("allow_udp[0]"), "{wider}");
        let none = check(&Grants { allow_udp_bind: vec!["0.0.0.0:0".parse().unwrap()], ..Grants::default() }, &outer);
        assert!(none.unwrap_err().to_string().contains("allow_udp_bind[0]"));
    }
}
