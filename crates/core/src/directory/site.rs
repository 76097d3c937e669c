//! Which AD site this server is in, asked the way Windows' DC locator asks it: an "LDAP ping"
//! (MS-ADTS 6.3.3), a connectionless LDAP search of the rootDSE over UDP port 389 for the
//! `Netlogon` attribute with the filter `(&(DnsDomain=<domain>)(NtVer=\06\00\00\00))`. The DC
//! answers with a NETLOGON_SAM_LOGON_RESPONSE_EX (MS-ADTS 6.3.1.9), in which `ClientSiteName`
//! is the site whose subnet holds the address the ping came from, and `DcSiteName` the DC's
//! own. Nothing is bound and no credential is sent: any domain member may ask this.
//!
//! The request is built and the answer read with the BER code ldap3 uses (`ldap3::asn1`); the
//! Netlogon blob's names are RFC 1035 names with compression pointers, read here.

use ldap3::asn1::{
    Boolean, Enumerated, Integer, OctetString, Sequence, StructureTag, Tag, TagClass,
};
use std::net::SocketAddr;
use std::time::Duration;

/// NETLOGON_NT_VERSION_5 | NETLOGON_NT_VERSION_5EX: ask for the _EX answer, which has sites.
const NT_VERSION: u32 = 0x0000_0006;
/// LOGON_SAM_LOGON_RESPONSE_EX, and the same when the user (none here) is unknown.
const OPCODES: [u16; 2] = [23, 25];

/// What a DC said in its answer to the ping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingAnswer {
    pub forest: String,
    pub domain: String,
    pub dc_host: String,
    pub dc_site: String,
    /// Empty when no site's subnet holds this server's address.
    pub client_site: String,
}

/// The ping's datagram for `domain` (its DNS name), with message id `id`.
pub fn ping_request(domain: &str, id: i64) -> Result<Vec<u8>, String> {
    let mut nt_ver = String::new();
    for b in NT_VERSION.to_le_bytes() {
        nt_ver.push_str(&format!("\\{b:02x}"));
    }
    let escaped = ldap3::ldap_escape(domain);
    let filter = ldap3::parse_filter(format!("(&(DnsDomain={escaped})(NtVer={nt_ver}))"))
        .map_err(|()| format!("`{domain}` cannot be put in an LDAP ping"))?;
    let octets = |s: &str| {
        Tag::OctetString(OctetString {
            inner: s.as_bytes().to_vec(),
            ..Default::default()
        })
    };
    let search = Tag::Sequence(Sequence {
        id: 3,
        class: TagClass::Application,
        inner: vec![
            octets(""),
            Tag::Enumerated(Enumerated {
                inner: 0, // base
                ..Default::default()
            }),
            Tag::Enumerated(Enumerated {
                inner: 0, // never dereference
                ..Default::default()
            }),
            Tag::Integer(Integer {
                inner: 0,
                ..Default::default()
            }),
            Tag::Integer(Integer {
                inner: 0,
                ..Default::default()
            }),
            Tag::Boolean(Boolean {
                inner: false,
                ..Default::default()
            }),
            filter,
            Tag::Sequence(Sequence {
                inner: vec![octets("Netlogon")],
                ..Default::default()
            }),
        ],
    });
    let message = Tag::Sequence(Sequence {
        inner: vec![
            Tag::Integer(Integer {
                inner: id,
                ..Default::default()
            }),
            search,
        ],
        ..Default::default()
    });
    let mut buf = bytes::BytesMut::new();
    ldap3::asn1::write::encode_into(&mut buf, ldap3::asn1::ASNTag::into_structure(message))
        .map_err(|e| format!("the LDAP ping could not be encoded: {e}"))?;
    Ok(buf.to_vec())
}

/// The Netlogon value in the DC's answer to the ping with message id `id`.
fn netlogon_value(datagram: &[u8], id: i64) -> Result<Vec<u8>, String> {
    let bad = |what: &str| format!("the DC's answer to the LDAP ping is not one ({what})");
    let (_, msg) = ldap3::asn1::parse_tag(datagram).map_err(|_| bad("not BER"))?;
    let mut parts = msg
        .expect_constructed()
        .ok_or_else(|| bad("not a message"))?
        .into_iter();
    let got_id = parts
        .next()
        .and_then(StructureTag::expect_primitive)
        .ok_or_else(|| bad("no message id"))?;
    let got_id = got_id.iter().fold(0i64, |n, b| (n << 8) | i64::from(*b));
    if got_id != id {
        return Err(bad("another message id"));
    }
    let op = parts.next().ok_or_else(|| bad("no operation"))?;
    // A SearchResultEntry (APPLICATION 4); a DC with nothing to say sends only the Done.
    let entry = op
        .match_class(TagClass::Application)
        .and_then(|t| t.match_id(4))
        .ok_or_else(|| {
            "the DC answered the LDAP ping without a Netlogon entry (it does not serve this domain)"
                .to_string()
        })?
        .expect_constructed()
        .ok_or_else(|| bad("an empty entry"))?;
    let attrs = entry
        .into_iter()
        .nth(1)
        .and_then(StructureTag::expect_constructed)
        .ok_or_else(|| bad("no attributes"))?;
    for attr in attrs {
        let mut kv = attr.expect_constructed().unwrap_or_default().into_iter();
        let name = kv.next().and_then(StructureTag::expect_primitive);
        if name.is_some_and(|n| n.eq_ignore_ascii_case(b"netlogon")) {
            return kv
                .next()
                .and_then(StructureTag::expect_constructed)
                .and_then(|vals| vals.into_iter().next())
                .and_then(StructureTag::expect_primitive)
                .ok_or_else(|| bad("an empty Netlogon"));
        }
    }
    Err(bad("no Netlogon attribute"))
}

/// One RFC 1035 name at `at` in `blob` (pointers are offsets from the blob's start), and the
/// offset after it.
fn name_at(blob: &[u8], mut at: usize) -> Result<(String, usize), String> {
    let bad = || "the DC's Netlogon answer has a broken name".to_string();
    let mut labels: Vec<String> = Vec::new();
    let mut after = None;
    // Each pointer must go back, so a loop of pointers ends.
    let mut limit = at;
    loop {
        let len = *blob.get(at).ok_or_else(bad)?;
        match len {
            0 => {
                return Ok((labels.join("."), after.unwrap_or(at + 1)));
            }
            l if l & 0xC0 == 0xC0 => {
                let low = *blob.get(at + 1).ok_or_else(bad)?;
                let to = (usize::from(l & 0x3F) << 8) | usize::from(low);
                if to >= limit {
                    return Err(bad());
                }
                after.get_or_insert(at + 2);
                limit = to;
                at = to;
            }
            l if l & 0xC0 == 0 => {
                let l = usize::from(l);
                let label = blob.get(at + 1..at + 1 + l).ok_or_else(bad)?;
                labels.push(String::from_utf8_lossy(label).into_owned());
                at += 1 + l;
            }
            _ => return Err(bad()),
        }
    }
}

/// Reads a NETLOGON_SAM_LOGON_RESPONSE_EX.
pub fn parse_netlogon(blob: &[u8]) -> Result<PingAnswer, String> {
    let opcode = blob
        .get(0..2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or("the DC's Netlogon answer is empty")?;
    if !OPCODES.contains(&opcode) {
        return Err(format!(
            "the DC's Netlogon answer is of another kind (opcode {opcode}); it is not an AD domain controller"
        ));
    }
    // Opcode, Sbz, Flags, DomainGuid: 24 bytes, then the names in order.
    let mut at = 24;
    let mut next = || -> Result<String, String> {
        let (n, after) = name_at(blob, at)?;
        at = after;
        Ok(n)
    };
    let forest = next()?;
    let domain = next()?;
    let dc_host = next()?;
    let _netbios_domain = next()?;
    let _netbios_host = next()?;
    let _user = next()?;
    let dc_site = next()?;
    let client_site = next()?;
    Ok(PingAnswer {
        forest,
        domain,
        dc_host,
        dc_site,
        client_site,
    })
}

/// Pings the DC at `addr` (UDP, port 389) for `domain`, waiting at most `timeout`.
pub async fn ping(addr: SocketAddr, domain: &str, timeout: Duration) -> Result<PingAnswer, String> {
    let id = 1 + i64::from(std::process::id() % 30_000);
    let request = ping_request(domain, id)?;
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let exchange = async {
        let socket = tokio::net::UdpSocket::bind(local).await?;
        socket.connect(addr).await?;
        socket.send(&request).await?;
        let mut buf = vec![0u8; 4096];
        let n = socket.recv(&mut buf).await?;
        buf.truncate(n);
        Ok::<_, std::io::Error>(buf)
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            format!(
                "{addr} did not answer the LDAP ping (UDP 389) within {} s",
                timeout.as_secs_f32()
            )
        })?
        .map_err(|e| format!("the LDAP ping to {addr} failed: {e}"))?;
    parse_netlogon(&netlogon_value(&answer, id)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name as RFC 1035 writes it, uncompressed.
    fn name(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in s.split('.').filter(|l| !l.is_empty()) {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out
    }

    /// A NETLOGON_SAM_LOGON_RESPONSE_EX as a DC of example.com in site Branch-Oslo writes it:
    /// the domain name points back at the forest's, the host name ends with a pointer to it.
    fn recorded(client_site: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&23u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&0x0003_f3fdu32.to_le_bytes());
        b.extend_from_slice(&[0x11; 16]);
        let forest = b.len();
        b.extend(name("example.com"));
        b.extend_from_slice(&[0xC0, forest as u8]); // domain: the same name
        b.extend_from_slice(&[3, b'd', b'c', b'2', 0xC0, forest as u8]); // dc2.<forest>
        b.extend(name("EXAMPLE"));
        b.extend(name("DC2"));
        b.push(0); // no user
        let site = b.len();
        b.extend(name("Branch-Oslo"));
        if client_site == "Branch-Oslo" {
            b.extend_from_slice(&[0xC0, site as u8]);
        } else {
            b.extend(name(client_site));
        }
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        b
    }

    #[test]
    fn the_netlogon_answer_gives_both_sites_through_its_pointers() {
        let a = parse_netlogon(&recorded("Branch-Oslo")).unwrap();
        assert_eq!(
            a,
            PingAnswer {
                forest: "example.com".into(),
                domain: "example.com".into(),
                dc_host: "dc2.example.com".into(),
                dc_site: "Branch-Oslo".into(),
                client_site: "Branch-Oslo".into(),
            }
        );
        // No subnet holds the client: its site is empty.
        assert_eq!(parse_netlogon(&recorded("")).unwrap().client_site, "");
    }

    #[test]
    fn broken_answers_are_refused_in_words_not_read_past_their_end() {
        let good = recorded("HQ");
        for cut in [0, 1, 10, 24, 30, good.len() - 12] {
            assert!(parse_netlogon(&good[..cut]).is_err(), "cut at {cut}");
        }
        // A pointer to itself (or forward) would loop.
        let mut looped = good.clone();
        looped[24] = 0xC0;
        looped[25] = 24;
        assert!(parse_netlogon(&looped).is_err());
        let mut other = good;
        other[0] = 19; // an NT4-style answer
        assert!(parse_netlogon(&other).unwrap_err().contains("opcode 19"));
    }

    #[test]
    fn the_ping_is_a_base_search_of_the_root_dse_for_netlogon() {
        let req = ping_request("example.com", 7).unwrap();
        let (rest, msg) = ldap3::asn1::parse_tag(&req).unwrap();
        assert!(rest.is_empty());
        let parts = msg.expect_constructed().unwrap();
        assert_eq!(parts[0].clone().expect_primitive().unwrap(), vec![7]);
        let search = parts[1]
            .clone()
            .match_class(TagClass::Application)
            .and_then(|t| t.match_id(3))
            .and_then(|t| t.expect_constructed())
            .unwrap();
        assert_eq!(search[0].clone().expect_primitive().unwrap(), b"");
        // The filter holds the domain and the version's four bytes as they go on the wire.
        let wire = req.windows(11).any(|w| w == b"example.com");
        assert!(wire);
        assert!(req.windows(4).any(|w| w == [6, 0, 0, 0]));
        assert!(req.windows(8).any(|w| w == b"Netlogon"));
    }

    #[test]
    fn an_answer_for_another_message_or_without_an_entry_is_not_taken() {
        // The DC's SearchResultDone alone: nothing to read.
        let done = Tag::Sequence(Sequence {
            inner: vec![
                Tag::Integer(Integer {
                    inner: 7,
                    ..Default::default()
                }),
                Tag::Sequence(Sequence {
                    id: 5,
                    class: TagClass::Application,
                    inner: vec![],
                }),
            ],
            ..Default::default()
        });
        let mut buf = bytes::BytesMut::new();
        ldap3::asn1::write::encode_into(&mut buf, ldap3::asn1::ASNTag::into_structure(done))
            .unwrap();
        assert!(
            netlogon_value(&buf, 7)
                .unwrap_err()
                .contains("without a Netlogon entry")
        );
        assert!(
            netlogon_value(&buf, 8)
                .unwrap_err()
                .contains("another message id")
        );
    }
}
