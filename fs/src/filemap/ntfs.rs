//! NTFS: MFT records (with their update-sequence fixups), data runlists (also spread over
//! several records through $ATTRIBUTE_LIST, as a fragmented file's are), and directory
//! indexes ($I30), read linearly. A volume marked dirty or hibernated by Windows (Fast
//! Startup) is refused: its on-disk structures are not the truth.

use super::{
    corrupt, find, is_iso_name, same_name, walk_isos, FileMap, Item, Listing, Lookup, Run, ScanError,
};
use crate::{le16, le32, le64, ReadAt};

const ROOT: u64 = 5;
const VOLUME: u64 = 3;
const ATTR_LIST: u32 = 0x20;
const FILE_NAME: u32 = 0x30;
const VOLUME_INFO: u32 = 0x70;
const DATA: u32 = 0x80;
const INDEX_ROOT: u32 = 0x90;
const INDEX_ALLOCATION: u32 = 0xA0;
const END: u32 = 0xFFFF_FFFF;
/// Directory indexes read whole; far above any real directory.
const MAX_INDEX: u64 = 64 << 20;

/// A runlist: (first cluster, or None for a hole; length in clusters).
type Runs = Vec<(Option<u64>, u64)>;

/// One attribute of an MFT record, as found.
struct Attr {
    kind: u32,
    named: bool,
    flags: u16,
    body: Body,
}

enum Body {
    Resident(Vec<u8>),
    NonResident { start_vcn: u64, runs: Vec<(Option<u64>, u64)>, size: u64, initialized: u64 },
}

/// (LCN or a hole, length in clusters) from a runlist.
fn runlist(b: &[u8]) -> Result<Runs, ScanError> {
    let mut out = Vec::new();
    let (mut at, mut lcn) = (0usize, 0i64);
    while at < b.len() && b[at] != 0 {
        let (len_n, off_n) = (usize::from(b[at] & 0xF), usize::from(b[at] >> 4));
        if len_n == 0 || len_n > 8 || off_n > 8 || at + 1 + len_n + off_n > b.len() {
            return Err(corrupt("a bad runlist"));
        }
        let mut len = 0u64;
        for i in 0..len_n {
            len |= u64::from(b[at + 1 + i]) << (8 * i);
        }
        let start = if off_n == 0 {
            None
        } else {
            let mut off = 0i64;
            for i in 0..off_n {
                off |= i64::from(b[at + 1 + len_n + i]) << (8 * i);
            }
            let shift = 64 - 8 * off_n as u32;
            lcn = lcn
                .checked_add((off << shift) >> shift)
                .ok_or_else(|| corrupt("a runlist offset overflows"))?; // sign-extended
            Some(u64::try_from(lcn).map_err(|_| corrupt("a negative cluster number"))?)
        };
        out.push((start, len));
        at += 1 + len_n + off_n;
    }
    Ok(out)
}

/// Undoes the update sequence of a record of `len` bytes read from `sector`-byte sectors.
fn fixup(rec: &mut [u8], magic: &[u8; 4], sector: usize) -> Result<(), ScanError> {
    if rec.len() < 48 || &rec[0..4] != magic {
        return Err(corrupt(format!("a record without its {} magic", String::from_utf8_lossy(magic))));
    }
    let usa = usize::from(le16(rec, 4));
    let count = usize::from(le16(rec, 6));
    let check = [*rec.get(usa).unwrap_or(&0), *rec.get(usa + 1).unwrap_or(&0)];
    for i in 1..count {
        let end = i * sector;
        if end > rec.len() || usa + 2 * i + 2 > rec.len() {
            return Err(corrupt("an update sequence past the record"));
        }
        if rec[end - 2..end] != check {
            return Err(corrupt("a torn record (update sequence mismatch)"));
        }
        rec[end - 2] = rec[usa + 2 * i];
        rec[end - 1] = rec[usa + 2 * i + 1];
    }
    Ok(())
}

fn attrs(rec: &[u8]) -> Result<Vec<Attr>, ScanError> {
    let mut out = Vec::new();
    let mut at = usize::from(le16(rec, 0x14));
    while at + 16 <= rec.len() {
        let kind = le32(rec, at);
        if kind == END {
            break;
        }
        let len = le32(rec, at + 4) as usize;
        if len < 16 || at + len > rec.len() {
            return Err(corrupt("an attribute past its record"));
        }
        let a = &rec[at..at + len];
        let named = a[9] != 0;
        let flags = le16(a, 0x0C);
        let body = if a[8] == 0 {
            if len < 0x18 {
                return Err(corrupt("a short resident attribute"));
            }
            let (vlen, voff) = (le32(a, 0x10) as usize, usize::from(le16(a, 0x14)));
            Body::Resident(
                a.get(voff..voff + vlen)
                    .ok_or_else(|| corrupt("a resident value past its attribute"))?
                    .to_vec(),
            )
        } else {
            if len < 0x40 {
                return Err(corrupt("a short non-resident attribute"));
            }
            let off = usize::from(le16(a, 0x20));
            Body::NonResident {
                start_vcn: le64(a, 0x10),
                runs: runlist(a.get(off..).unwrap_or_default())?,
                size: le64(a, 0x30),
                initialized: le64(a, 0x38),
            }
        };
        out.push(Attr { kind, named, flags, body });
        at += len;
    }
    Ok(out)
}

struct Fs<'a, D: ReadAt + ?Sized> {
    dev: &'a D,
    sector: usize,
    cluster: u64,
    record: u64,
    index_block: u64,
    /// Where the $MFT's own records are.
    mft: Runs,
}

impl<'a, D: ReadAt + ?Sized> Fs<'a, D> {
    fn open(dev: &'a D) -> Result<Self, ScanError> {
        let mut bs = [0u8; 512];
        dev.read_at(0, &mut bs)?;
        if &bs[3..11] != b"NTFS    " {
            return Err(corrupt("no NTFS boot sector"));
        }
        let sector = usize::from(le16(&bs, 0x0B));
        let spc = bs[0x0D];
        let per_cluster = if spc > 0x80 { 1u64 << (256 - u32::from(spc)).min(20) } else { u64::from(spc) };
        if !matches!(sector, 512 | 1024 | 2048 | 4096) || per_cluster == 0 {
            return Err(corrupt("NTFS geometry"));
        }
        let cluster = sector as u64 * per_cluster;
        let size_of = |v: u8| {
            let v = v as i8;
            if v < 0 {
                1u64 << (-i32::from(v)).min(20)
            } else {
                u64::from(v as u8) * cluster
            }
        };
        let (record, index_block) = (size_of(bs[0x40]), size_of(bs[0x44]));
        if !(512..=65536).contains(&record) || !(512..=65536).contains(&index_block) {
            return Err(corrupt("NTFS record or index block size"));
        }
        let mut fs = Fs {
            dev,
            sector,
            cluster,
            record,
            index_block,
            mft: vec![(Some(le64(&bs, 0x30)), u64::MAX / cluster)],
        };
        // Record 0 is $MFT itself: its $DATA says where all the others are.
        let rec0 = fs.record(0)?;
        let runs = attrs(&rec0)?
            .into_iter()
            .find_map(|a| match (a.kind, a.named, a.body) {
                (DATA, false, Body::NonResident { runs, .. }) => Some(runs),
                _ => None,
            })
            .ok_or_else(|| corrupt("$MFT has no data runs"))?;
        fs.mft = runs;
        Ok(fs)
    }

    /// Bytes in `n` clusters; a crafted run can name more than any device holds.
    fn bytes(&self, n: u64) -> Result<u64, ScanError> {
        n.checked_mul(self.cluster).ok_or_else(|| corrupt(format!("{n} clusters are past any device")))
    }

    /// Byte offset of `vcn` (in clusters) through `runs`.
    fn locate(&self, runs: &[(Option<u64>, u64)], byte: u64) -> Option<u64> {
        let mut vcn = 0u64;
        let want = byte / self.cluster;
        for &(lcn, len) in runs {
            if want < vcn.saturating_add(len) {
                let at = self.bytes(lcn?.checked_add(want - vcn)?).ok()?;
                return at.checked_add(byte % self.cluster);
            }
            vcn += len;
        }
        None
    }

    fn record(&self, n: u64) -> Result<Vec<u8>, ScanError> {
        let at = n
            .checked_mul(self.record)
            .and_then(|byte| self.locate(&self.mft, byte))
            .ok_or_else(|| corrupt(format!("MFT record {n} is not on disk")))?;
        let mut rec = vec![0u8; self.record as usize];
        self.dev.read_at(at, &mut rec)?;
        fixup(&mut rec, b"FILE", self.sector)?;
        if le16(&rec, 0x16) & 1 == 0 {
            return Err(corrupt(format!("MFT record {n} is not in use")));
        }
        Ok(rec)
    }

    /// All attributes of a file: those of its record and, through $ATTRIBUTE_LIST, of the
    /// records its attributes spilled into.
    fn file_attrs(&self, n: u64) -> Result<Vec<Attr>, ScanError> {
        let mut all = attrs(&self.record(n)?)?;
        let Some(pos) = all.iter().position(|a| a.kind == ATTR_LIST) else { return Ok(all) };
        let list = self.value(&all.remove(pos), 1 << 20)?;
        let mut others: Vec<(u64, u16)> = Vec::new();
        let mut at = 0;
        while at + 26 <= list.len() {
            let len = usize::from(le16(&list, at + 4));
            if len == 0 {
                break;
            }
            let reference = le64(&list, at + 16);
            let (rec, seq) = (reference & 0xFFFF_FFFF_FFFF, (reference >> 48) as u16);
            if rec != n && !others.contains(&(rec, seq)) {
                others.push((rec, seq));
            }
            at += len;
        }
        for (rec, seq) in others {
            let raw = self.record(rec)?;
            // The record must be this file's extension, of the generation the list names: a
            // record freed and reused by another file keeps neither.
            let (base, got) = (le64(&raw, 0x20) & 0xFFFF_FFFF_FFFF, le16(&raw, 0x10));
            if base != n || got != seq {
                return Err(corrupt(format!(
                    "MFT record {rec} (sequence {got}, base {base}) is not the extension of record {n} \
                     (sequence {seq}) its attribute list names"
                )));
            }
            all.extend(attrs(&raw)?);
        }
        Ok(all)
    }

    /// A (small) attribute's whole value.
    fn value(&self, a: &Attr, max: u64) -> Result<Vec<u8>, ScanError> {
        match &a.body {
            Body::Resident(v) => Ok(v.clone()),
            Body::NonResident { runs, size, .. } => {
                if *size > max {
                    return Err(corrupt("an attribute larger than expected"));
                }
                let mut out = Vec::with_capacity(*size as usize);
                let mut left = *size;
                for &(lcn, len) in runs {
                    let bytes = self.bytes(len)?.min(left);
                    match lcn {
                        Some(l) => {
                            let mut buf = vec![0u8; bytes as usize];
                            self.dev.read_at(self.bytes(l)?, &mut buf)?;
                            out.extend(buf);
                        }
                        None => out.resize(out.len() + bytes as usize, 0),
                    }
                    left -= bytes;
                }
                Ok(out)
            }
        }
    }

    /// (name, record, whether its index key says directory) of every entry of a directory: the index root and every index block,
    /// read linearly (a stale entry in an unused block is caught by the caller's check).
    fn entries(&self, dir: u64) -> Result<Vec<(String, u64, bool)>, ScanError> {
        let attrs = self.file_attrs(dir)?;
        let mut out = Vec::new();
        for a in attrs.iter().filter(|a| a.named) {
            match a.kind {
                INDEX_ROOT => {
                    let v = self.value(a, 1 << 20)?;
                    if v.len() >= 32 {
                        index_entries(&v[16..], &mut out);
                    }
                }
                INDEX_ALLOCATION => {
                    let data = self.value(a, MAX_INDEX)?;
                    for block in data.chunks(self.index_block as usize) {
                        let mut block = block.to_vec();
                        if fixup(&mut block, b"INDX", self.sector).is_ok() {
                            index_entries(&block[0x18..], &mut out);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// The name a record gives itself in `parent`, to reject stale index entries.
    fn named_in(&self, n: u64, parent: u64, name: &str) -> Result<bool, ScanError> {
        for a in self.file_attrs(n)?.iter().filter(|a| a.kind == FILE_NAME) {
            if let Body::Resident(v) = &a.body {
                if v.len() >= 0x42 && le64(v, 0) & 0xFFFF_FFFF_FFFF == parent && same_name(&fn_name(v), name)
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    fn check_clean(&self) -> Result<(), ScanError> {
        for a in self.file_attrs(VOLUME)? {
            if let (VOLUME_INFO, Body::Resident(v)) = (a.kind, &a.body) {
                if v.len() >= 12 && le16(v, 0x0A) & 0x1 != 0 {
                    return Err(ScanError::Unclean(
                        "NTFS is marked dirty (not shut down cleanly); run chkdsk on Windows".into(),
                    ));
                }
            }
        }
        // Windows' Fast Startup leaves the volume hibernated: its data may still be in
        // hiberfil.sys, not where the MFT says.
        if let Some((_, rec, _)) =
            self.entries(ROOT)?.into_iter().find(|(n, ..)| same_name(n, "hiberfil.sys"))
        {
            let data = self.file_attrs(rec)?.into_iter().find(|a| a.kind == DATA && !a.named);
            if let Some(Body::NonResident { runs, .. }) = data.map(|a| a.body) {
                if let Some(at) = self.locate(&runs, 0) {
                    let mut magic = [0u8; 4];
                    self.dev.read_at(at, &mut magic)?;
                    if magic.eq_ignore_ascii_case(b"hibr") {
                        return Err(ScanError::Unclean(
                            "Windows hibernated this volume (Fast Startup): shut Windows down fully".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn fn_name(v: &[u8]) -> String {
    let len = usize::from(v[0x40]);
    let units: Vec<u16> =
        v[0x42..].chunks_exact(2).take(len).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16_lossy(&units)
}

/// The file attribute a FILE_NAME (and so an index key) gives a directory.
const DIRECTORY_ATTR: u32 = 0x1000_0000;
/// The namespace of a name that only DOS sees (`ARCHLI~1.ISO`), beside the file's long one.
const DOS_NAMESPACE: u8 = 2;

/// Index entries from an index header (root or block); short DOS names are left out: the
/// long name beside them names the same file.
fn index_entries(h: &[u8], out: &mut Vec<(String, u64, bool)>) {
    if h.len() < 16 {
        return;
    }
    let (mut at, end) = (le32(h, 0) as usize, (le32(h, 4) as usize).min(h.len()));
    while at + 16 <= end {
        let len = usize::from(le16(h, at + 8));
        let key = usize::from(le16(h, at + 10));
        let flags = le16(h, at + 12);
        if flags & 2 != 0 || len < 16 {
            break; // the last entry carries no name
        }
        if key >= 0x42 && at + 16 + key <= end && h[at + 16 + 0x41] != DOS_NAMESPACE {
            let name = &h[at + 16..at + 16 + key];
            out.push((fn_name(name), le64(h, at) & 0xFFFF_FFFF_FFFF, le32(name, 0x38) & DIRECTORY_ATTR != 0));
        }
        at += len;
    }
}

pub fn map(dev: &(impl ReadAt + ?Sized), path: &str) -> Result<FileMap, ScanError> {
    let fs = Fs::open(dev)?;
    fs.check_clean()?;
    let file = find(path, ROOT, |&dir, name| {
        let entries = fs.entries(dir)?;
        for (n, rec, _) in &entries {
            if same_name(n, name) && fs.named_in(*rec, dir, name)? {
                let is_dir = le16(&fs.record(*rec)?, 0x16) & 2 != 0;
                return Ok(if is_dir { Lookup::Dir(*rec) } else { Lookup::File(*rec) });
            }
        }
        Ok(Lookup::Missing(entries.into_iter().map(|(n, ..)| n).filter(|n| !n.starts_with('$')).collect()))
    })?;
    data_map(&fs, file)
}

pub fn isos(dev: &(impl ReadAt + ?Sized)) -> Result<Listing, ScanError> {
    let fs = Fs::open(dev)?;
    fs.check_clean()?;
    walk_isos(ROOT, |&dir| {
        let mut items = Vec::new();
        for (name, rec, dir_attr) in fs.entries(dir)? {
            // Only folders and ISO files are worth their records. The root lists itself as
            // `.`; a stale entry (in an unused index block) names a record that moved on or
            // was freed, and loses its entry, not the folder.
            if rec == dir
                || !(dir_attr || is_iso_name(&name))
                || !fs.named_in(rec, dir, &name).unwrap_or(false)
            {
                continue;
            }
            if let Ok(record) = fs.record(rec) {
                items.push(Item { name, dir: le16(&record, 0x16) & 2 != 0, node: rec });
            }
        }
        Ok(items)
    })
}

/// The unnamed $DATA attribute's runs, in VCN order across the records it spans.
fn data_map<D: ReadAt + ?Sized>(fs: &Fs<D>, rec: u64) -> Result<FileMap, ScanError> {
    let mut pieces: Vec<(u64, Runs, u16)> = Vec::new();
    let mut size = None;
    for a in fs.file_attrs(rec)?.into_iter().filter(|a| a.kind == DATA && !a.named) {
        match a.body {
            Body::Resident(_) => {
                return Err(ScanError::Unsupported("the file's data is resident in its MFT record".into()))
            }
            Body::NonResident { start_vcn, runs, size: s, initialized } => {
                if start_vcn == 0 {
                    if initialized < s {
                        return Err(ScanError::Unsupported(
                            "the file is not fully written (initialized size < size)".into(),
                        ));
                    }
                    size = Some(s);
                }
                pieces.push((start_vcn, runs, a.flags));
            }
        }
    }
    let size = size.ok_or_else(|| corrupt("no $DATA for the file"))?;
    if pieces.iter().any(|(_, _, f)| f & 0x0001 != 0) {
        return Err(ScanError::Unsupported("the file is NTFS-compressed".into()));
    }
    if pieces.iter().any(|(_, _, f)| f & 0x4000 != 0) {
        return Err(ScanError::Unsupported("the file is encrypted".into()));
    }
    pieces.sort_by_key(|p| p.0);
    let mut map = FileMap::new(size);
    // Each piece must start where the one before ended: a gap or an overlap between the
    // records an attribute list names would shift every byte after it.
    let mut vcn = 0u64;
    for (start_vcn, runs, _) in pieces {
        if start_vcn != vcn {
            return Err(corrupt(format!("$DATA continues at VCN {start_vcn} where VCN {vcn} comes next")));
        }
        for (lcn, len) in runs {
            let bytes = fs.bytes(len)?;
            map.push(match lcn {
                Some(l) => Run::Data { offset: fs.bytes(l)?, len: bytes },
                None => Run::Zero { len: bytes },
            });
            vcn = vcn.checked_add(len).ok_or_else(|| corrupt("$DATA's runs overflow"))?;
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runlists_decode_signed_relative_offsets_and_holes() {
        // 0x21: 1 length byte, 2 offset bytes. Then a run 0x10 back, then a hole.
        let b = [0x21, 0x08, 0x00, 0x01, 0x11, 0x04, 0xF0, 0x01, 0x10, 0x00];
        assert_eq!(runlist(&b).unwrap(), [(Some(256), 8), (Some(240), 4), (None, 16)]);
        assert!(runlist(&[0x21, 0x08]).is_err());
    }

    #[test]
    fn torn_records_are_refused() {
        let mut rec = vec![0u8; 1024];
        rec[0..4].copy_from_slice(b"FILE");
        rec[4..6].copy_from_slice(&48u16.to_le_bytes());
        rec[6..8].copy_from_slice(&3u16.to_le_bytes());
        rec[48..50].copy_from_slice(&[9, 9]);
        rec[510..512].copy_from_slice(&[9, 9]);
        rec[1022..1024].copy_from_slice(&[8, 8]); // not the check value
        assert!(matches!(fixup(&mut rec, b"FILE", 512), Err(ScanError::Corrupt(_))));
    }

    #[test]
    fn a_resident_attribute_shorter_than_its_header_is_corrupt() {
        // Found by `cargo fuzz run filemap`: a 16-byte resident attribute, whose value
        // length and offset would lie past it.
        let mut rec = vec![0u8; 64];
        rec[0x14] = 0x18;
        rec[0x18] = 0x10;
        rec[0x1C] = 16;
        assert!(attrs(&rec).is_err());
    }
}
