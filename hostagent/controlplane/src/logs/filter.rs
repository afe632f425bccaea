//! CloudWatch Logs filter patterns for unstructured log events: terms (all must
//! occur), `"quoted phrases"`, `?term` (any of the `?` terms), `-term` (must not
//! occur). Matching is case-sensitive substring matching, as CloudWatch's is.
//! JSON (`{ $.x = ... }`) and space-delimited (`[a, b]`) patterns are refused.

/// Why a filter pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// `{ $.x = ... }` or `[a, b]`.
    #[error("JSON and space-delimited filter patterns are not supported; use terms")]
    Unsupported,
    /// A `"` without its closing one.
    #[error("unterminated quoted term in filter pattern")]
    Unterminated,
}

/// A parsed filter pattern.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pattern {
    all: Vec<String>,
    any: Vec<String>,
    none: Vec<String>,
}

impl Pattern {
    /// Parses `s`; Err: why it is not supported.
    pub fn parse(s: &str) -> Result<Pattern, PatternError> {
        let t = s.trim();
        if t.starts_with('{') || t.starts_with('[') {
            return Err(PatternError::Unsupported);
        }
        let mut p = Pattern::default();
        let mut chars = t.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let Some(&first) = chars.peek() else { break };
            let kind = match first {
                '?' | '-' => {
                    chars.next();
                    first
                }
                _ => ' ',
            };
            let mut term = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                term.push(n);
                            }
                        }
                        '"' => {
                            closed = true;
                            break;
                        }
                        c => term.push(c),
                    }
                }
                if !closed {
                    return Err(PatternError::Unterminated);
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    term.push(c);
                    chars.next();
                }
            }
            if term.is_empty() {
                continue;
            }
            match kind {
                '?' => p.any.push(term),
                '-' => p.none.push(term),
                _ => p.all.push(term),
            }
        }
        Ok(p)
    }

    /// Whether `message` matches.
    pub fn matches(&self, message: &str) -> bool {
        self.all.iter().all(|t| message.contains(t.as_str()))
            && (self.any.is_empty() || self.any.iter().any(|t| message.contains(t.as_str())))
            && !self.none.iter().any(|t| message.contains(t.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_phrases_any_and_none() {
        let m = |p: &str, s: &str| Pattern::parse(p).unwrap().matches(s);
        assert!(m("", "anything"));
        assert!(m("ERROR", "[ERROR] disk full"));
        assert!(!m("ERROR", "[error] disk full"), "case-sensitive");
        assert!(m("ERROR disk", "[ERROR] disk full"));
        assert!(!m("ERROR net", "[ERROR] disk full"));
        assert!(m("\"disk full\"", "[ERROR] disk full"));
        assert!(!m("\"full disk\"", "[ERROR] disk full"));
        assert!(m("?WARN ?ERROR", "[ERROR] x"));
        assert!(!m("?WARN ?ERROR", "[INFO] x"));
        assert!(m("ERROR -disk", "[ERROR] net down"));
        assert!(!m("ERROR -disk", "[ERROR] disk full"));
        assert!(m("\"say \\\"hi\\\"\"", "they say \"hi\""));
        assert!(Pattern::parse("{ $.level = \"x\" }").is_err());
        assert!(Pattern::parse("[ip, user]").is_err());
        assert!(Pattern::parse("\"open").is_err());
    }
}
