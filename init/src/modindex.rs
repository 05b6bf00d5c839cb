//! kmod's binary module indexes (`modules.dep.bin`, `modules.alias.bin`,
//! `modules.builtin.bin`), for distro initrds that ship them without the text files
//! (mkinitcpio deletes those). Each is a trie with path-compressed prefixes; it is read whole
//! into its (key, values) pairs, bounded against a corrupt or crafted file: each node is
//! read once (a child that points back up, or two that share a node, is an error), keys
//! are at most 1 KiB, which bounds the walk's depth, and the output at most 64 MiB.

use std::collections::HashSet;

const MAGIC: u32 = 0xB007_F457;
const VERSION_MAJOR: u32 = 2;
const PREFIX: u32 = 0x8000_0000;
const VALUES: u32 = 0x4000_0000;
const CHILDS: u32 = 0x2000_0000;
const MASK: u32 = 0x0FFF_FFFF;
/// More than any kernel's modules.alias has (about 30 000 keys, fewer nodes than that
/// times two).
const MAX_NODES: usize = 1 << 20;
const MAX_KEY: usize = 1024;
/// What the index may expand to: a kernel's whole modules.alias is about 2 MB of text.
const MAX_OUT: usize = 64 << 20;

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u32(&self, at: usize) -> Result<u32, String> {
        let b = self.0.get(at..at.checked_add(4).ok_or("offset overflow")?).ok_or("cut short")?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn byte(&self, at: usize) -> Result<u8, String> {
        self.0.get(at).copied().ok_or_else(|| "cut short".to_string())
    }

    /// The NUL-terminated string at `at`, and where it ends.
    fn cstr(&self, at: usize) -> Result<(&[u8], usize), String> {
        let rest = self.0.get(at..).ok_or("cut short")?;
        let len = rest.iter().position(|&b| b == 0).ok_or("a string without its end")?;
        Ok((&rest[..len], at + len + 1))
    }
}

/// Every key that has values, with its values in file order.
pub fn entries(data: &[u8]) -> Result<Vec<(String, Vec<String>)>, String> {
    let r = Reader(data);
    if r.u32(0)? != MAGIC {
        return Err("not a kmod index (bad magic)".into());
    }
    let version = r.u32(4)?;
    if version >> 16 != VERSION_MAJOR {
        return Err(format!("kmod index version {version:#x}, not 2.x"));
    }
    let mut walk = Walk { r, key: Vec::new(), seen: HashSet::new(), out_bytes: 0, out: Vec::new() };
    walk.node(walk.r.u32(8)?)?;
    Ok(walk.out)
}

/// A depth-first walk with one key buffer. Each node is visited once (a node reached
/// twice makes it no tree), so time and the values read grow with the file; the keys
/// written out are bounded by [`MAX_OUT`].
struct Walk<'a> {
    r: Reader<'a>,
    key: Vec<u8>,
    seen: HashSet<usize>,
    out_bytes: usize,
    out: Vec<(String, Vec<String>)>,
}

impl Walk<'_> {
    fn node(&mut self, node: u32) -> Result<(), String> {
        let mut at = (node & MASK) as usize;
        if at == 0 {
            return Ok(());
        }
        if !self.seen.insert(at) {
            return Err(format!("node {at:#x} is reached twice: not a tree"));
        }
        if self.seen.len() > MAX_NODES {
            return Err(format!("more than {MAX_NODES} nodes"));
        }
        let depth = self.key.len();
        if node & PREFIX != 0 {
            let (prefix, end) = self.r.cstr(at)?;
            self.key.extend_from_slice(prefix);
            at = end;
        }
        if self.key.len() > MAX_KEY {
            return Err(format!("a key longer than {MAX_KEY} bytes"));
        }
        // The child table comes before the values.
        let children = if node & CHILDS != 0 {
            let (first, last) = (self.r.byte(at)?, self.r.byte(at + 1)?);
            if first > last {
                return Err("a child range that ends before it starts".into());
            }
            let table = at + 2;
            at = table + 4 * (usize::from(last - first) + 1);
            Some((first, last, table))
        } else {
            None
        };
        if node & VALUES != 0 {
            let count = self.r.u32(at)?;
            at += 4;
            let mut values = Vec::new();
            for _ in 0..count {
                // A priority, then the value.
                let (value, end) = self.r.cstr(at + 4)?;
                self.out_bytes += value.len() + self.key.len();
                values.push(String::from_utf8_lossy(value).into_owned());
                at = end;
            }
            if self.out_bytes > MAX_OUT {
                return Err(format!("more than {MAX_OUT} bytes of keys and values"));
            }
            self.out.push((String::from_utf8_lossy(&self.key).into_owned(), values));
        }
        if let Some((first, last, table)) = children {
            for (i, c) in (first..=last).enumerate() {
                let child = self.r.u32(table + 4 * i)?;
                self.key.push(c);
                self.node(child)?;
                self.key.pop();
            }
        }
        self.key.truncate(depth);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index as depmod writes it: root "" with children 'e' and 'l'; "e" has the prefix
    /// "xt4" and a value; "l" has "oop" and two values.
    fn sample() -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&MAGIC.to_be_bytes());
        d.extend_from_slice(&0x0002_0001u32.to_be_bytes());
        let root_at = 12u32;
        d.extend_from_slice(&(root_at | CHILDS).to_be_bytes());
        // Root: children 'e'..='l', only two of them present.
        let children_at = d.len();
        d.extend_from_slice(b"el");
        let slots = (b'l' - b'e' + 1) as usize;
        d.resize(children_at + 2 + 4 * slots, 0);
        let ext4 = d.len() as u32;
        d.extend_from_slice(b"xt4\0");
        d.extend_from_slice(&1u32.to_be_bytes());
        d.extend_from_slice(&0u32.to_be_bytes());
        d.extend_from_slice(b"kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko\0");
        let lp = d.len() as u32;
        d.extend_from_slice(b"oop\0");
        d.extend_from_slice(&2u32.to_be_bytes());
        for v in [&b"a\0"[..], b"b\0"] {
            d.extend_from_slice(&0u32.to_be_bytes());
            d.extend_from_slice(v);
        }
        let slot = |c: u8| children_at + 2 + 4 * (c - b'e') as usize;
        d[slot(b'e')..slot(b'e') + 4].copy_from_slice(&(ext4 | PREFIX | VALUES).to_be_bytes());
        d[slot(b'l')..slot(b'l') + 4].copy_from_slice(&(lp | PREFIX | VALUES).to_be_bytes());
        d
    }

    #[test]
    fn a_node_with_children_and_values() {
        let mut d = sample();
        // The root gets a value of its own, after its child table: the empty key.
        let root = u32::from_be_bytes(d[8..12].try_into().unwrap());
        d[8..12].copy_from_slice(&(root | VALUES).to_be_bytes());
        let after_table = 12 + 2 + 4 * 8;
        let mut tail = d.split_off(after_table);
        d.extend_from_slice(&1u32.to_be_bytes());
        d.extend_from_slice(&0u32.to_be_bytes());
        d.extend_from_slice(b"root\0");
        let shift = (d.len() - after_table) as u32;
        // The children moved by what was inserted before them.
        for slot in [12 + 2, 12 + 2 + 4 * 7] {
            let v = u32::from_be_bytes(d[slot..slot + 4].try_into().unwrap());
            d[slot..slot + 4].copy_from_slice(&(v + shift).to_be_bytes());
        }
        d.append(&mut tail);
        let e = entries(&d).unwrap();
        assert_eq!(e[0], (String::new(), vec!["root".to_string()]));
        assert_eq!(e.len(), 3);
    }

    #[test]
    fn reads_keys_and_values() {
        let mut e = entries(&sample()).unwrap();
        e.sort();
        assert_eq!(
            e,
            vec![
                ("ext4".to_string(), vec!["kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko".to_string()]),
                ("loop".to_string(), vec!["a".to_string(), "b".to_string()]),
            ]
        );
    }

    #[test]
    fn a_loop_and_a_cut_are_errors() {
        let mut d = sample();
        // The first child slot points back at the root.
        d[14..18].copy_from_slice(&(12 | CHILDS).to_be_bytes());
        assert!(entries(&d).unwrap_err().contains("reached twice"));
        let d = sample();
        for len in 0..d.len() {
            assert!(entries(&d[..len]).is_err(), "{len}");
        }
        assert!(entries(b"not an index").is_err());
    }
}
