//! Extension negotiation for permessage-deflate (RFC 7692 section 7.1).

use super::{DeflateConfig, DeflateOptions, EXTENSION_NAME};
use crate::handshake::Extension;

/// The offer a client sends for `options`.
///
/// `client_max_window_bits` is always present (without a value when the
/// client puts no limit on itself): it tells the server it may limit the
/// client's window, which servers that save memory rely on.
pub fn offer(options: &DeflateOptions) -> Extension {
    let mut params = Vec::new();
    if options.server_no_context_takeover {
        params.push(("server_no_context_takeover".to_owned(), None));
    }
    if options.client_no_context_takeover {
        params.push(("client_no_context_takeover".to_owned(), None));
    }
    if options.server_max_window_bits < 15 {
        params.push(("server_max_window_bits".to_owned(), Some(options.server_max_window_bits.to_string())));
    }
    let client_bits = (options.client_max_window_bits < 15).then(|| options.client_max_window_bits.to_string());
    params.push(("client_max_window_bits".to_owned(), client_bits));
    Extension { name: EXTENSION_NAME.to_owned(), params }
}

/// One offer, decoded. `client_max_window_bits` is `Some(None)` when the
/// parameter came without a value.
#[derive(Debug, Default)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<Option<u8>>,
}

fn window_bits(value: Option<&str>) -> Option<u8> {
    let value = value?;
    // Only the plain decimal form: no sign, no leading zero.
    if value.is_empty() || value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u8>().ok().filter(|bits| (8..=15).contains(bits))
}

/// Decodes the parameters; `None` when one is unknown, repeated or has an
/// invalid value (the offer must then be declined, section 7.1).
fn decode(ext: &Extension) -> Option<Params> {
    let mut p = Params::default();
    let mut seen = [false; 4];
    for (key, value) in &ext.params {
        let value = value.as_deref();
        let index = match key.as_str() {
            "server_no_context_takeover" if value.is_none() => {
                p.server_no_context_takeover = true;
                0
            }
            "client_no_context_takeover" if value.is_none() => {
                p.client_no_context_takeover = true;
                1
            }
            "server_max_window_bits" => {
                p.server_max_window_bits = Some(window_bits(value)?);
                2
            }
            "client_max_window_bits" => {
                p.client_max_window_bits = Some(match value {
                    None => None,
                    Some(_) => Some(window_bits(value)?),
                });
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    Some(p)
}

/// Server side: picks the first acceptable permessage-deflate offer and
/// returns the agreed configuration and the response element, or `None` if
/// no offer can be accepted (the connection then runs uncompressed).
pub fn accept_offers(offers: &[Extension], options: &DeflateOptions) -> Option<(DeflateConfig, Extension)> {
    offers.iter().filter(|ext| ext.name.eq_ignore_ascii_case(EXTENSION_NAME)).find_map(|ext| {
        let p = decode(ext)?;
        let server_bits = options.server_max_window_bits.min(p.server_max_window_bits.unwrap_or(15));
        // We may only limit the client's window if it said we may.
        let client_bits = match p.client_max_window_bits {
            None => 15,
            Some(None) => options.client_max_window_bits,
            Some(Some(offered)) => offered.min(options.client_max_window_bits),
        };
        let config = DeflateConfig {
            server_no_context_takeover: p.server_no_context_takeover || options.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover || options.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        };
        let mut params = Vec::new();
        if config.server_no_context_takeover {
            params.push(("server_no_context_takeover".to_owned(), None));
        }
        if config.client_no_context_takeover {
            params.push(("client_no_context_takeover".to_owned(), None));
        }
        if p.server_max_window_bits.is_some() || server_bits < 15 {
            params.push(("server_max_window_bits".to_owned(), Some(server_bits.to_string())));
        }
        if p.client_max_window_bits.is_some() && (client_bits < 15 || matches!(p.client_max_window_bits, Some(Some(_))))
        {
            params.push(("client_max_window_bits".to_owned(), Some(client_bits.to_string())));
        }
        Some((config, Extension { name: EXTENSION_NAME.to_owned(), params }))
    })
}

/// Client side: checks the server's answer against what we offered.
///
/// `Ok(None)` when the server did not accept permessage-deflate. An answer
/// that breaks section 7.1 (unknown or repeated parameters, a parameter we
/// did not allow, a larger window than we asked for, an unknown extension)
/// is an error: the client must fail the connection.
pub fn validate_response(response: &[Extension], options: &DeflateOptions) -> Result<Option<DeflateConfig>, String> {
    let mut agreed = None;
    for ext in response {
        if !ext.name.eq_ignore_ascii_case(EXTENSION_NAME) {
            return Err(format!("server accepted unoffered extension {}", ext.name));
        }
        if agreed.is_some() {
            return Err("permessage-deflate accepted twice".into());
        }
        let p = decode(ext).ok_or("invalid permessage-deflate parameters")?;
        if options.server_no_context_takeover && !p.server_no_context_takeover {
            return Err("server ignored server_no_context_takeover".into());
        }
        let server_bits = p.server_max_window_bits.unwrap_or(15);
        if server_bits > options.server_max_window_bits {
            return Err("server_max_window_bits larger than offered".into());
        }
        let client_bits = match p.client_max_window_bits {
            None => 15,
            Some(None) => return Err("client_max_window_bits without a value".into()),
            Some(Some(bits)) => bits,
        };
        agreed = Some(DeflateConfig {
            server_no_context_takeover: p.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover || options.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits.min(options.client_max_window_bits),
        });
    }
    Ok(agreed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::parse_extensions;

    fn accept(offer: &str, options: DeflateOptions) -> Option<(DeflateConfig, String)> {
        accept_offers(&parse_extensions(offer).unwrap(), &options)
            .map(|(c, e)| (c, crate::handshake::format_extensions(&[e])))
    }

    #[test]
    fn rfc7692_7_1_server_accepts_plain_offer() {
        let (config, response) = accept("permessage-deflate", DeflateOptions::default()).unwrap();
        assert_eq!(config, DeflateConfig::default());
        assert_eq!(response, "permessage-deflate");
    }

    #[test]
    fn rfc7692_7_1_1_server_echoes_no_context_takeover() {
        let (config, response) =
            accept("permessage-deflate; server_no_context_takeover", DeflateOptions::default()).unwrap();
        assert!(config.server_no_context_takeover);
        assert_eq!(response, "permessage-deflate; server_no_context_takeover");
    }

    #[test]
    fn rfc7692_7_1_2_window_bits() {
        let (config, response) =
            accept("permessage-deflate; server_max_window_bits=10; client_max_window_bits", DeflateOptions::default())
                .unwrap();
        assert_eq!(config.server_max_window_bits, 10);
        assert_eq!(config.client_max_window_bits, 15);
        assert_eq!(response, "permessage-deflate; server_max_window_bits=10");
        // A client limit is only sent if the client allowed one.
        let small = DeflateOptions { client_max_window_bits: 9, ..Default::default() };
        let (config, response) = accept("permessage-deflate", small).unwrap();
        assert_eq!(config.client_max_window_bits, 15);
        assert_eq!(response, "permessage-deflate");
        let (config, response) = accept("permessage-deflate; client_max_window_bits", small).unwrap();
        assert_eq!(config.client_max_window_bits, 9);
        assert_eq!(response, "permessage-deflate; client_max_window_bits=9");
    }

    #[test]
    fn rfc7692_7_1_invalid_offers_declined_with_fallback() {
        for bad in [
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover=1",
        ] {
            assert!(accept(bad, DeflateOptions::default()).is_none(), "{bad}");
        }
        let (config, _) =
            accept("permessage-deflate; foo, permessage-deflate; server_max_window_bits=9", Default::default())
                .unwrap();
        assert_eq!(config.server_max_window_bits, 9);
        assert!(accept("x-webkit-deflate-frame", DeflateOptions::default()).is_none());
    }

    #[test]
    fn client_validates_response() {
        let opts = DeflateOptions::default();
        let check = |s: &str| validate_response(&parse_extensions(s).unwrap(), &opts);
        assert_eq!(check("").unwrap(), None);
        assert_eq!(check("permessage-deflate").unwrap(), Some(DeflateConfig::default()));
        let c = check("permessage-deflate; client_max_window_bits=9; server_no_context_takeover").unwrap().unwrap();
        assert_eq!(c.client_max_window_bits, 9);
        assert!(c.server_no_context_takeover);
        for bad in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate, permessage-deflate",
            "permessage-deflate; bogus",
            "foo",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
        let strict =
            DeflateOptions { server_max_window_bits: 10, server_no_context_takeover: true, ..Default::default() };
        let check = |s: &str| validate_response(&parse_extensions(s).unwrap(), &strict);
        assert!(check("permessage-deflate; server_no_context_takeover").is_err());
        assert!(check("permessage-deflate; server_no_context_takeover; server_max_window_bits=11").is_err());
        assert!(check("permessage-deflate; server_no_context_takeover; server_max_window_bits=10").is_ok());
    }

    #[test]
    fn offer_always_allows_client_window_limit() {
        let text = crate::handshake::format_extensions(&[offer(&DeflateOptions::default())]);
        assert_eq!(text, "permessage-deflate; client_max_window_bits");
    }
}
