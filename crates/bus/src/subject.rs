//! Subject pattern matching, NATS style: `*` matches one token, a final `>`
//! matches one or more.

pub(crate) fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literal_and_wildcards() {
        assert!(matches("user.created", "user.created"));
        assert!(!matches("user.created", "user.deleted"));
        assert!(!matches("user.created", "user.created.v2"));
        assert!(matches("user.*", "user.created"));
        assert!(!matches("user.*", "user.created.v2"));
        assert!(!matches("user.*", "user"));
        assert!(matches("user.>", "user.created.v2"));
        assert!(!matches("user.>", "user"));
        assert!(matches(">", "anything.at.all"));
    }
}
