//! Redis-style glob patterns (KEYS, SCAN MATCH, CONFIG GET, retention rules).

/// Redis-style glob: `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`. Linear backtracking to the
/// last `*` only, so no pattern takes more than O(pattern x text) steps.
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    // Matches one pattern element at p[pi] against byte c; returns the element's length.
    fn one(p: &[u8], pi: usize, c: u8) -> (bool, usize) {
        match p[pi] {
            b'?' => (true, 1),
            b'\\' if pi + 1 < p.len() => (p[pi + 1] == c, 2),
            b'[' => {
                let mut j = pi + 1;
                let neg = j < p.len() && p[j] == b'^';
                if neg {
                    j += 1;
                }
                let mut hit = false;
                while j < p.len() && p[j] != b']' {
                    if p[j] == b'\\' && j + 1 < p.len() {
                        hit |= p[j + 1] == c;
                        j += 2;
                    } else if j + 2 < p.len() && p[j + 1] == b'-' && p[j + 2] != b']' {
                        let (lo, hi) = (p[j].min(p[j + 2]), p[j].max(p[j + 2]));
                        hit |= (lo..=hi).contains(&c);
                        j += 3;
                    } else {
                        hit |= p[j] == c;
                        j += 1;
                    }
                }
                (hit != neg, (j + 1).min(p.len()) - pi)
            }
            other => (other == c, 1),
        }
    }
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            pi += 1;
            star = Some((pi, si));
            continue;
        }
        if pi < p.len() {
            let (ok, len) = one(p, pi, s[si]);
            if ok {
                pi += len;
                si += 1;
                continue;
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_patterns() {
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"cortex:*", b"cortex:dlq"));
        assert!(!glob(b"cortex:*", b"other"));
        assert!(glob(b"h?llo", b"hello"));
        assert!(glob(b"h[ae]llo", b"hallo"));
        assert!(!glob(b"h[^e]llo", b"hello"));
        assert!(glob(b"h[a-c]llo", b"hbllo"));
        assert!(glob(b"a\\*b", b"a*b"));
        assert!(!glob(b"a\\*b", b"axb"));
        assert!(glob(&[b'*'; 200], b"short"));
        assert!(glob(b"*a*b", b"xxaxxb"));
        assert!(!glob(b"*a*b", b"xxaxx"));
        assert!(glob(b"h*", b"h"));
        assert!(!glob(b"h?", b"h"));
        // A pathological pattern is linear, not exponential (this returned only after the
        // heat death of the universe with a naive recursive matcher).
        let p: Vec<u8> = b"a*".repeat(1000).into_iter().chain(*b"b").collect();
        assert!(!glob(&p, &[b'a'; 5000]));
    }
}
