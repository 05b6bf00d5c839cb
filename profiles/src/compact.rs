//! The compact form: one `key value` line per field, a profile from `profile NAME` to `end`.
//! Every field is spelled out (defaults were applied when the YAML was read), so the
//! reader has no defaults of its own.

use crate::{Profile, ProfileError, Select};
use std::fmt::Write;

pub fn to_compact(profiles: &[Profile]) -> String {
    let mut s = String::new();
    for p in profiles {
        // Writing to a String cannot fail.
        let _ = writeln!(s, "profile {}", p.name);
        let _ = writeln!(s, "description {}", p.description);
        let _ = writeln!(s, "priority {}", p.priority);
        for d in &p.detect {
            let _ = writeln!(s, "detect {d}");
        }
        let _ = writeln!(s, "dir {}", p.dir);
        for rule in &p.select {
            let _ = match rule {
                Select::CmdlineChain(k) => writeln!(s, "select cmdline-chain {k}"),
                Select::InitrdChain { file, var } => {
                    writeln!(s, "select initrd-chain {var} {file}")
                }
                Select::Chain(n) => writeln!(s, "select chain {n}"),
                Select::File(n) => writeln!(s, "select file {n}"),
                Select::Glob(g) => writeln!(s, "select glob {g}"),
            };
        }
        let _ = writeln!(s, "medium {}", p.medium);
        let _ = writeln!(s, "layers-at {}", p.layers_at);
        let _ = writeln!(s, "overlay-at {}", p.overlay_at);
        let _ = writeln!(s, "init {}", p.init);
        s.push_str("end\n");
    }
    s
}

#[derive(Default)]
struct Partial {
    name: String,
    description: Option<String>,
    priority: Option<u32>,
    detect: Vec<String>,
    dir: Option<String>,
    select: Vec<Select>,
    medium: Option<String>,
    layers_at: Option<String>,
    overlay_at: Option<String>,
    init: Option<String>,
}

pub fn parse_compact(text: &str) -> Result<Vec<Profile>, ProfileError> {
    let mut out = Vec::new();
    let mut cur: Option<Partial> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |msg: String| ProfileError::Compact { line, msg };
        let raw = raw.trim_end();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let (key, value) = raw.split_once(' ').unwrap_or((raw, ""));
        let Some(p) = cur.as_mut() else {
            if key != "profile" || value.is_empty() {
                return Err(err(format!("expected `profile NAME`, found {raw:?}")));
            }
            cur = Some(Partial { name: value.to_string(), ..Partial::default() });
            continue;
        };
        let v = value.to_string();
        match key {
            "description" => p.description = Some(v),
            "priority" => p.priority = Some(v.parse().map_err(|_| err(format!("bad priority {v:?}")))?),
            "detect" => p.detect.push(v),
            "dir" => p.dir = Some(v),
            "select" => p
                .select
                .push(parse_select(value).ok_or_else(|| err(format!("unknown image rule {value:?}")))?),
            "medium" => p.medium = Some(v),
            "layers-at" => p.layers_at = Some(v),
            "overlay-at" => p.overlay_at = Some(v),
            "init" => p.init = Some(v),
            "end" => {
                let p = cur.take().expect("inside a profile");
                let missing = |f: &str| err(format!("profile {:?} lacks `{f}`", p.name));
                let profile = Profile {
                    description: p.description.ok_or_else(|| missing("description"))?,
                    priority: p.priority.ok_or_else(|| missing("priority"))?,
                    dir: p.dir.ok_or_else(|| missing("dir"))?,
                    medium: p.medium.ok_or_else(|| missing("medium"))?,
                    layers_at: p.layers_at.ok_or_else(|| missing("layers-at"))?,
                    overlay_at: p.overlay_at.ok_or_else(|| missing("overlay-at"))?,
                    init: p.init.ok_or_else(|| missing("init"))?,
                    name: p.name,
                    detect: p.detect,
                    select: p.select,
                };
                profile.validate()?;
                out.push(profile);
            }
            _ => return Err(err(format!("unknown key {key:?}"))),
        }
    }
    match cur {
        Some(p) => Err(ProfileError::Compact {
            line: text.lines().count(),
            msg: format!("profile {:?} has no `end`", p.name),
        }),
        None => Ok(out),
    }
}

fn parse_select(value: &str) -> Option<Select> {
    let (kind, arg) = value.split_once(' ')?;
    Some(match kind {
        "cmdline-chain" => Select::CmdlineChain(arg.into()),
        "initrd-chain" => {
            let (var, file) = arg.split_once(' ')?;
            Select::InitrdChain { file: file.into(), var: var.into() }
        }
        "chain" => Select::Chain(arg.into()),
        "file" => Select::File(arg.into()),
        "glob" => Select::Glob(arg.into()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    #[test]
    fn round_trip() {
        let mut other = sample();
        other.name = "other".into();
        other.detect.clear();
        let text = to_compact(&[sample(), other.clone()]);
        assert_eq!(parse_compact(&text).unwrap(), vec![sample(), other]);
    }

    #[test]
    fn values_keep_spaces() {
        let mut p = sample();
        p.description = "Debian  Live, with spaces".into();
        p.select = vec![Select::File("my root.squashfs".into())];
        assert_eq!(parse_compact(&to_compact(&[p.clone()])).unwrap(), vec![p]);
    }

    #[test]
    fn errors_name_the_line() {
        let text = to_compact(&[sample()]).replace("priority 10", "priority ten");
        assert_eq!(
            parse_compact(&text),
            Err(ProfileError::Compact { line: 3, msg: "bad priority \"ten\"".into() })
        );
        let text = to_compact(&[sample()]).replace("medium /run/live/medium\n", "");
        assert!(
            matches!(parse_compact(&text), Err(ProfileError::Compact { msg, .. }) if msg.contains("lacks `medium`"))
        );
        assert!(parse_compact("profile x\ndir /\n").is_err());
        assert!(parse_compact("dir /\n").is_err());
        assert!(parse_compact("profile x\nselect bogus y\n").is_err());
    }

    #[test]
    fn invalid_profiles_are_refused() {
        let text = to_compact(&[sample()]).replace("dir /live", "dir live");
        assert!(matches!(parse_compact(&text), Err(ProfileError::Invalid { .. })));
    }
}
