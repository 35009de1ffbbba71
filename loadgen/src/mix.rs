//! Request targets: one `--path`, or a weighted `--mix`.

use crate::rng::Rng;

/// Weighted request targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix {
    /// (cumulative weight, path), cumulative weights increasing.
    entries: Vec<(u64, String)>,
    total: u64,
}

impl Mix {
    /// One path, always.
    pub fn single(path: &str) -> Mix {
        Mix {
            entries: vec![(1, path.to_string())],
            total: 1,
        }
    }

    /// Parses `99:/?cpu_us=20,1:/?cpu_us=2000` (weight:path, comma-separated;
    /// weights are relative, e.g. percentages).
    pub fn parse(spec: &str) -> Result<Mix, String> {
        let mut entries = Vec::new();
        let mut total = 0u64;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (w, path) = part.split_once(':').ok_or_else(|| {
                format!("--mix entry {part:?}: write weight:path, e.g. 99:/?cpu_us=20")
            })?;
            let w: u64 = w
                .trim()
                .parse()
                .map_err(|_| format!("--mix entry {part:?}: weight {w:?} is not a whole number"))?;
            check_path(path)?;
            if w == 0 {
                continue;
            }
            total += w;
            entries.push((total, path.to_string()));
        }
        if entries.is_empty() {
            return Err("--mix has no entry with a weight above 0".into());
        }
        Ok(Mix { entries, total })
    }

    /// Every path with its share (0..1).
    pub fn shares(&self) -> Vec<(String, f64)> {
        let mut prev = 0;
        self.entries
            .iter()
            .map(|(cum, p)| {
                let share = (cum - prev) as f64 / self.total as f64;
                prev = *cum;
                (p.clone(), share)
            })
            .collect()
    }

    /// Index of a path picked at random by weight.
    pub fn pick(&self, rng: &mut Rng) -> usize {
        if self.entries.len() == 1 {
            return 0;
        }
        let x = rng.next_u64() % self.total;
        self.entries.partition_point(|(cum, _)| *cum <= x)
    }

    /// The paths, in order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(_, p)| p.as_str())
    }
}

/// A request target must be an origin-form path without spaces or controls.
pub fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "request target {path:?} must start with / and contain no spaces"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_pick_in_proportion() {
        let mix = Mix::parse("99:/?cpu_us=20, 1:/?cpu_us=2000").unwrap();
        let mut rng = Rng::new(3);
        let n = 100_000;
        let heavy = (0..n).filter(|_| mix.pick(&mut rng) == 1).count();
        assert!((heavy as f64 / n as f64 - 0.01).abs() < 0.002, "{heavy}");
        assert_eq!(
            mix.shares(),
            vec![("/?cpu_us=20".into(), 0.99), ("/?cpu_us=2000".into(), 0.01)]
        );
    }

    #[test]
    fn bad_mixes_are_refused() {
        assert!(Mix::parse("/a").is_err());
        assert!(Mix::parse("x:/a").is_err());
        assert!(Mix::parse("0:/a").is_err());
        assert!(Mix::parse("1:a").is_err());
        assert!(Mix::parse("1:/a b").is_err());
    }
}
