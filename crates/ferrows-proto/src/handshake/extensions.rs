//! The `Sec-WebSocket-Extensions` header (RFC 6455 section 9.1).
//!
//! ```text
//! extension-list = 1#extension
//! extension      = token *( ";" param )
//! param          = token [ "=" ( token | quoted-string ) ]
//! ```

use std::fmt;

/// One extension in a `Sec-WebSocket-Extensions` list, with its parameters
/// in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Parameters, each a name and an optional value (quotes removed).
    pub params: Vec<(String, Option<String>)>,
}

/// The header value is not a valid extension list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedExtensions(pub String);

impl fmt::Display for MalformedExtensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed Sec-WebSocket-Extensions: {}", self.0)
    }
}

impl std::error::Error for MalformedExtensions {}

/// Parses one header value into extensions. Empty list elements (`a,,b`)
/// are allowed, as RFC 7230's `#rule` says.
pub fn parse_extensions(value: &str) -> Result<Vec<Extension>, MalformedExtensions> {
    let mut parser = Parser { rest: value.as_bytes() };
    let mut out = Vec::new();
    loop {
        parser.skip_ws();
        if parser.rest.is_empty() {
            return Ok(out);
        }
        if parser.eat(b',') {
            continue;
        }
        let name = parser.token()?;
        let mut params = Vec::new();
        loop {
            parser.skip_ws();
            if parser.eat(b';') {
                parser.skip_ws();
                let key = parser.token()?;
                parser.skip_ws();
                let value = if parser.eat(b'=') {
                    parser.skip_ws();
                    Some(if parser.rest.first() == Some(&b'"') { parser.quoted()? } else { parser.token()? })
                } else {
                    None
                };
                params.push((key, value));
            } else if parser.rest.is_empty() || parser.eat(b',') {
                break;
            } else {
                return Err(MalformedExtensions(format!("unexpected input after {name}")));
            }
        }
        out.push(Extension { name, params });
    }
}

/// Formats extensions as a header value.
pub fn format_extensions(extensions: &[Extension]) -> String {
    let mut out = String::new();
    for (i, ext) in extensions.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&ext.name);
        for (key, value) in &ext.params {
            out.push_str("; ");
            out.push_str(key);
            if let Some(value) = value {
                out.push('=');
                out.push_str(value);
            }
        }
    }
    out
}

struct Parser<'a> {
    rest: &'a [u8],
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while let [b' ' | b'\t', rest @ ..] = self.rest {
            self.rest = rest;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.rest.first() == Some(&byte) {
            self.rest = &self.rest[1..];
            true
        } else {
            false
        }
    }

    fn token(&mut self) -> Result<String, MalformedExtensions> {
        let len = self.rest.iter().take_while(|b| is_tchar(**b)).count();
        if len == 0 {
            return Err(MalformedExtensions("expected a token".into()));
        }
        let (token, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(String::from_utf8(token.to_vec()).expect("tchars are ASCII"))
    }

    fn quoted(&mut self) -> Result<String, MalformedExtensions> {
        self.rest = &self.rest[1..];
        let mut value = Vec::new();
        loop {
            match self.rest {
                [b'"', rest @ ..] => {
                    self.rest = rest;
                    break;
                }
                [b'\\', c, rest @ ..] => {
                    value.push(*c);
                    self.rest = rest;
                }
                [c, rest @ ..] if *c >= 0x20 && *c != 0x7F => {
                    value.push(*c);
                    self.rest = rest;
                }
                _ => return Err(MalformedExtensions("unterminated quoted string".into())),
            }
        }
        // RFC 6455 9.1: a quoted value must still be a token once unquoted.
        if value.is_empty() || !value.iter().all(|b| is_tchar(*b)) {
            return Err(MalformedExtensions("quoted value is not a token".into()));
        }
        Ok(String::from_utf8(value).expect("tchars are ASCII"))
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_9_1_grammar() {
        let parsed = parse_extensions(
            "permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\", foo ,, bar;x=1",
        )
        .unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].name, "permessage-deflate");
        assert_eq!(
            parsed[0].params,
            vec![("client_max_window_bits".into(), None), ("server_max_window_bits".into(), Some("10".into()))]
        );
        assert_eq!(parsed[1], Extension { name: "foo".into(), params: vec![] });
        assert_eq!(parsed[2].params, vec![("x".into(), Some("1".into()))]);
    }

    #[test]
    fn malformed_lists_rejected() {
        for bad in ["a;", "a b", "a;=1", "a;b=\"unterminated", "a;b=\"\"", "a;b=\"x y\"", ";", "a;b=1=2"] {
            assert!(parse_extensions(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_extensions("").unwrap(), vec![]);
    }

    #[test]
    fn format_round_trip() {
        let text = "permessage-deflate; client_max_window_bits=9; server_no_context_takeover, x";
        assert_eq!(format_extensions(&parse_extensions(text).unwrap()), text);
    }
}
