//! Minimal, validating parser for `.npy` headers of 1-D uint16/uint32 arrays.

use super::shard::TokenWidth;

/// What the header of a 1-D token array says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub width: TokenWidth,
    /// Number of elements.
    pub len: usize,
    /// Byte offset of the data.
    pub data_offset: usize,
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Parses the header at the start of `bytes`. Accepts format versions 1-3, dtype
/// `<u2`/`<u4` (or the native spellings `=u2`/`=u4`; this crate assumes a little-endian
/// host), and exactly one
/// dimension. Returns a description of the problem otherwise.
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader, String> {
    if bytes.get(..MAGIC.len()) != Some(MAGIC) {
        return Err("missing \\x93NUMPY magic".into());
    }
    let major = *bytes.get(6).ok_or("truncated version")?;
    let (header_len, start): (usize, usize) = match major {
        1 => {
            let raw = bytes.get(8..10).ok_or("truncated header length")?;
            (u16::from_le_bytes([raw[0], raw[1]]) as usize, 10)
        }
        2 | 3 => {
            let raw = bytes.get(8..12).ok_or("truncated header length")?;
            (
                u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize,
                12,
            )
        }
        other => return Err(format!("unsupported npy version {other}")),
    };
    let end = start
        .checked_add(header_len)
        .ok_or("header length overflow")?;
    let header = bytes
        .get(start..end)
        .ok_or("header runs past end of file")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not UTF-8")?;

    let descr = quoted_value(header, "descr")?;
    let width = match descr.as_str() {
        "<u2" | "=u2" => TokenWidth::U16,
        "<u4" | "=u4" => TokenWidth::U32,
        other => {
            return Err(format!(
                "dtype {other:?} is not little-endian uint16/uint32"
            ));
        }
    };
    let fortran = raw_value(header, "fortran_order")?;
    if !fortran.starts_with("False") && !fortran.starts_with("True") {
        return Err("fortran_order is not a boolean".into());
    }
    let shape = raw_value(header, "shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("shape is not a tuple")?;
    let dims: Vec<&str> = inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let [dim] = dims.as_slice() else {
        return Err(format!("expected a 1-D array, shape is ({inner})"));
    };
    let len = dim
        .parse::<usize>()
        .map_err(|_| format!("bad dimension {dim:?}"))?;
    Ok(NpyHeader {
        width,
        len,
        data_offset: end,
    })
}

/// The text right after `'key':` (leading spaces trimmed).
fn raw_value<'a>(header: &'a str, key: &str) -> Result<&'a str, String> {
    let pattern = format!("'{key}'");
    let at = header.find(&pattern).ok_or(format!("header lacks {key}"))?;
    let rest = header[at + pattern.len()..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .ok_or(format!("{key} has no value"))?;
    Ok(rest.trim_start())
}

fn quoted_value(header: &str, key: &str) -> Result<String, String> {
    let raw = raw_value(header, key)?;
    let quote = raw
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"')
        .ok_or(format!("{key} is not a string"))?;
    let body = &raw[1..];
    let close = body
        .find(quote)
        .ok_or(format!("{key} string is not closed"))?;
    Ok(body[..close].to_string())
}

/// Serialises a 1-D array header + data (used by tests and tools that write shards).
pub fn encode(width: TokenWidth, tokens: &[u32]) -> Vec<u8> {
    let descr = match width {
        TokenWidth::U16 => "<u2",
        TokenWidth::U32 => "<u4",
    };
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({},), }}",
        tokens.len()
    );
    // Pad so that magic + version + length + dict + '\n' is a multiple of 64.
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len() + tokens.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    for &t in tokens {
        match width {
            TokenWidth::U16 => out.extend_from_slice(&(t as u16).to_le_bytes()),
            TokenWidth::U32 => out.extend_from_slice(&t.to_le_bytes()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numpy_style_headers() {
        let bytes = encode(TokenWidth::U32, &[1, 2, 3]);
        let header = parse_header(&bytes).unwrap();
        assert_eq!(
            header,
            NpyHeader {
                width: TokenWidth::U32,
                len: 3,
                data_offset: 128
            }
        );
        assert_eq!(bytes.len(), 128 + 12);
        // Exactly what numpy 1.x/2.x writes for np.arange(5, dtype=np.uint16).
        let mut numpy =
            b"\x93NUMPY\x01\x00v\x00{'descr': '<u2', 'fortran_order': False, 'shape': (5,), }"
                .to_vec();
        numpy.resize(127, b' ');
        numpy.push(b'\n');
        let header = parse_header(&numpy).unwrap();
        assert_eq!(
            header,
            NpyHeader {
                width: TokenWidth::U16,
                len: 5,
                data_offset: 128
            }
        );
    }

    #[test]
    fn rejects_unsupported_arrays() {
        let with = |dict: &str| {
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
            b.extend_from_slice(dict.as_bytes());
            parse_header(&b)
        };
        assert!(with("{'descr': '>u2', 'fortran_order': False, 'shape': (5,), }").is_err());
        assert!(with("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }").is_err());
        assert!(with("{'descr': '<u2', 'fortran_order': False, 'shape': (5, 2), }").is_err());
        assert!(with("{'descr': '<u2', 'fortran_order': False, 'shape': (), }").is_err());
        assert!(with("{'descr': '<u2', 'shape': (5,), }").is_err());
        assert!(with("{'descr': '<u2', 'fortran_order': False, 'shape': (-5,), }").is_err());
        assert!(parse_header(b"\x93NUMPY\x09\x00").is_err());
        assert!(parse_header(b"\x93NUMPY\x01\x00\xff\x00{'descr'").is_err());
        assert!(parse_header(b"PK\x03\x04").is_err());
    }
}
