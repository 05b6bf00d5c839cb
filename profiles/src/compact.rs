//! The compact form: one `key value` line per field, a profile from `profile NAME` to `end`.
//! Every field is spelled out (defaults were applied when the YAML was read), so the
//! reader has no defaults of its own.

use crate::{Layer, Profile, ProfileError, Select, Strategy};
use std::fmt::Write;

pub fn to_compact(profiles: &[Profile]) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let mut line = |key: &str, value: &str| {
        let _ = writeln!(s, "{key} {value}");
    };
    for p in profiles {
        line("profile", &p.name);
        line("description", &p.description);
        line("priority", &p.priority.to_string());
        p.detect.iter().for_each(|d| line("detect", d));
        p.label.iter().for_each(|l| line("label", l));
        p.unsupported.iter().for_each(|u| line("unsupported", u));
        line("strategy", p.strategy.name());
        line("cmdline", &p.cmdline);
        p.kernel.iter().for_each(|k| line("kernel", k));
        p.initrd.iter().for_each(|i| line("initrd", i));
        line("dir", &p.dir);
        for rule in &p.select {
            let value = match rule {
                Select::CmdlineChain(k) => format!("cmdline-chain {k}"),
                Select::InitrdChain { file, var } => format!("initrd-chain {var} {file}"),
                Select::Chain(n) => format!("chain {n}"),
                Select::File(n) => format!("file {n}"),
                Select::Glob(g) => format!("glob {g}"),
                Select::Stack(layers) => {
                    let names: Vec<String> = layers.iter().map(Layer::to_string).collect();
                    format!("stack {}", names.join(" "))
                }
            };
            line("select", &value);
        }
        p.nested.iter().for_each(|n| line("nested", n));
        line("outer-at", &p.outer_at);
        line("medium", &p.medium);
        line("layers-at", &p.layers_at);
        line("overlay-at", &p.overlay_at);
        line("overlay-on", &p.overlay_on);
        p.init.iter().for_each(|i| line("init", i));
        line("end", "");
    }
    s.lines().map(|l| format!("{}\n", l.trim_end())).collect()
}

#[derive(Default)]
struct Partial {
    name: String,
    description: Option<String>,
    priority: Option<u32>,
    detect: Vec<String>,
    label: Option<String>,
    unsupported: Option<String>,
    strategy: Option<Strategy>,
    cmdline: Option<String>,
    kernel: Vec<String>,
    initrd: Vec<String>,
    dir: Option<String>,
    select: Vec<Select>,
    nested: Vec<String>,
    outer_at: Option<String>,
    medium: Option<String>,
    layers_at: Option<String>,
    overlay_at: Option<String>,
    overlay_on: Option<String>,
    init: Option<String>,
}

/// Reads the compact form. `label`, `unsupported` and `init` are absent when unset; every
/// other field must be there.
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
            "label" => p.label = Some(v),
            "unsupported" => p.unsupported = Some(v),
            "strategy" => {
                p.strategy =
                    Some(Strategy::parse(value).ok_or_else(|| err(format!("unknown strategy {v:?}")))?)
            }
            "cmdline" => p.cmdline = Some(v),
            "kernel" => p.kernel.push(v),
            "initrd" => p.initrd.push(v),
            "dir" => p.dir = Some(v),
            "select" => p
                .select
                .push(parse_select(value).ok_or_else(|| err(format!("unknown image rule {value:?}")))?),
            "nested" => p.nested.push(v),
            "outer-at" => p.outer_at = Some(v),
            "medium" => p.medium = Some(v),
            "layers-at" => p.layers_at = Some(v),
            "overlay-at" => p.overlay_at = Some(v),
            "overlay-on" => p.overlay_on = Some(v),
            "init" => p.init = Some(v),
            "end" => {
                let p = cur.take().expect("inside a profile");
                let missing = |f: &str| err(format!("profile {:?} lacks `{f}`", p.name));
                let profile = Profile {
                    description: p.description.ok_or_else(|| missing("description"))?,
                    priority: p.priority.ok_or_else(|| missing("priority"))?,
                    strategy: p.strategy.ok_or_else(|| missing("strategy"))?,
                    cmdline: p.cmdline.ok_or_else(|| missing("cmdline"))?,
                    dir: p.dir.ok_or_else(|| missing("dir"))?,
                    outer_at: p.outer_at.ok_or_else(|| missing("outer-at"))?,
                    medium: p.medium.ok_or_else(|| missing("medium"))?,
                    layers_at: p.layers_at.ok_or_else(|| missing("layers-at"))?,
                    overlay_at: p.overlay_at.ok_or_else(|| missing("overlay-at"))?,
                    overlay_on: p.overlay_on.ok_or_else(|| missing("overlay-on"))?,
                    name: p.name,
                    detect: p.detect,
                    label: p.label,
                    unsupported: p.unsupported,
                    kernel: p.kernel,
                    initrd: p.initrd,
                    select: p.select,
                    nested: p.nested,
                    init: p.init,
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
        "stack" => Select::Stack(arg.split(' ').map(Layer::parse).collect()),
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
        other.label = Some("VOID_*".into());
        other.unsupported = Some("use Alpine's own initramfs".into());
        other.strategy = Strategy::Handoff;
        other.cmdline.clear();
        other.init = None;
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
