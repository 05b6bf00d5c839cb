//! Who signed a PE image (an EFI-stub kernel): the Authenticode signatures in its
//! certificate table, as shim and the firmware check them. Only read, never verified: this
//! says who to ask for a key, not whether the image is intact.

use anyhow::{anyhow, bail, Context, Result};
use cms::cert::x509::der::{Decode, Encode};
use cms::cert::x509::name::Name;
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use isoroot_fs::extents::hex;
use isoroot_fs::{le16, le32};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// One signature's signer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signer {
    /// The signing certificate's subject and issuer (their common names where they have one).
    pub subject: String,
    pub issuer: String,
    /// The sha256 of the signing certificate (DER), as `mokutil --list-enrolled` shows it.
    pub sha256: String,
}

/// `WIN_CERT_TYPE_PKCS_SIGNED_DATA`.
const PKCS_SIGNED_DATA: u16 = 2;
/// The certificate table's entry in the data directories.
const SECURITY_DIRECTORY: usize = 4;

/// The signers of a PE image; empty when it carries no signature. An image that is not PE
/// is an error.
pub fn signers(pe: &[u8]) -> Result<Vec<Signer>> {
    let table = certificate_table(pe)?;
    let mut out = Vec::new();
    let mut at = 0;
    // WIN_CERTIFICATE entries: length, revision, type, then the data; each 8-byte aligned.
    while at + 8 <= table.len() {
        let len = le32(table, at) as usize;
        if len < 8 || at + len > table.len() {
            bail!("a certificate entry of {len} bytes at {at} of a {}-byte table", table.len());
        }
        if le16(table, at + 6) == PKCS_SIGNED_DATA {
            out.extend(signed_data(&table[at + 8..at + len])?);
        }
        at += len.div_ceil(8) * 8;
    }
    Ok(out)
}

/// The bytes the security data directory names (a file offset, not an address).
fn certificate_table(pe: &[u8]) -> Result<&[u8]> {
    let field = |at: usize, n: usize| {
        at.checked_add(n).and_then(|end| pe.get(at..end)).context("the PE headers are cut short")
    };
    if field(0, 2)? != b"MZ" {
        bail!("not a PE image (no MZ header)");
    }
    let pe_at = le32(field(0x3c, 4)?, 0) as usize;
    if field(pe_at, 4)? != b"PE\0\0" {
        bail!("not a PE image (no PE signature at {pe_at})");
    }
    let opt = pe_at + 24;
    let (count_at, dirs) = match le16(field(opt, 2)?, 0) {
        0x10b => (opt + 92, opt + 96),
        0x20b => (opt + 108, opt + 112),
        m => bail!("a PE optional header of unknown magic {m:#x}"),
    };
    if (le32(field(count_at, 4)?, 0) as usize) <= SECURITY_DIRECTORY {
        return Ok(&[]);
    }
    let dir = field(dirs + SECURITY_DIRECTORY * 8, 8)?;
    let (offset, size) = (le32(dir, 0) as usize, le32(dir, 4) as usize);
    if offset == 0 || size == 0 {
        return Ok(&[]);
    }
    field(offset, size).context("the certificate table lies past the end of the image")
}

/// The signers of one PKCS#7 SignedData, each found among its certificates by issuer and
/// serial number.
fn signed_data(der: &[u8]) -> Result<Vec<Signer>> {
    // der's errors are not std errors without its std feature: carry their text.
    let info = ContentInfo::from_der(der).map_err(|e| anyhow!("decoding the PKCS#7 signature: {e}"))?;
    let data: SignedData =
        info.content.decode_as().map_err(|e| anyhow!("decoding the PKCS#7 SignedData: {e}"))?;
    let certs: Vec<_> = data
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            CertificateChoices::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for si in data.signer_infos.0.iter() {
        let SignerIdentifier::IssuerAndSerialNumber(id) = &si.sid else { continue };
        let Some(cert) = certs.iter().find(|c| {
            c.tbs_certificate.serial_number == id.serial_number && c.tbs_certificate.issuer == id.issuer
        }) else {
            out.push(Signer { subject: "?".into(), issuer: name(&id.issuer), sha256: String::new() });
            continue;
        };
        let der = cert.to_der().map_err(|e| anyhow!("encoding the signing certificate: {e}"))?;
        out.push(Signer {
            subject: name(&cert.tbs_certificate.subject),
            issuer: name(&cert.tbs_certificate.issuer),
            sha256: hex(&Sha256::digest(&der)),
        });
    }
    Ok(out)
}

/// A name's common name, or the whole name where it has none.
fn name(n: &Name) -> String {
    const CN: cms::cert::x509::der::asn1::ObjectIdentifier =
        cms::cert::x509::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    n.0.iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == CN)
        .and_then(|atv| {
            cms::cert::x509::der::asn1::Utf8StringRef::try_from(&atv.value)
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    cms::cert::x509::der::asn1::PrintableStringRef::try_from(&atv.value)
                        .map(|s| s.as_str().to_string())
                })
                .ok()
        })
        .unwrap_or_else(|| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PE32+ header with a certificate table of `table` at the end.
    fn pe(table: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 0x200];
        p[..2].copy_from_slice(b"MZ");
        p[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        p[0x80..0x84].copy_from_slice(b"PE\0\0");
        let opt = 0x80 + 24;
        p[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        p[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let dir = opt + 112 + SECURITY_DIRECTORY * 8;
        p[dir..dir + 4].copy_from_slice(&0x200u32.to_le_bytes());
        p[dir + 4..dir + 8].copy_from_slice(&(table.len() as u32).to_le_bytes());
        p.extend_from_slice(table);
        p
    }

    #[test]
    fn unsigned_and_broken_images() {
        assert_eq!(signers(&pe(&[])).unwrap(), []);
        assert!(signers(b"not a kernel").unwrap_err().to_string().contains("not a PE image"));
        // An entry longer than the table, and one that is not PKCS#7 (skipped).
        let mut bad = vec![0u8; 16];
        bad[..4].copy_from_slice(&64u32.to_le_bytes());
        assert!(signers(&pe(&bad)).unwrap_err().to_string().contains("a certificate entry of 64 bytes"));
        let mut other = vec![0u8; 16];
        other[..4].copy_from_slice(&16u32.to_le_bytes());
        other[6..8].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(signers(&pe(&other)).unwrap(), []);
        // PKCS#7 that does not decode.
        other[6..8].copy_from_slice(&PKCS_SIGNED_DATA.to_le_bytes());
        assert!(signers(&pe(&other)).is_err());
    }
}
