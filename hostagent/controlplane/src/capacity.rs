//! Capacity providers: the built-in `FARGATE` and `FARGATE_SPOT`, and which of a
//! strategy's providers the next task of a call or service gets (`base`, then
//! `weight`).

use crate::model::CapacityProviderStrategyItem;
use std::collections::HashMap;

/// The capacity providers every account has.
pub const BUILT_IN: &[&str] = &["FARGATE", "FARGATE_SPOT"];

/// The provider of the next task, given how many tasks each provider has: first
/// the provider with a `base` until it has that many, then the one furthest below
/// its share of `weight`. None when no provider can take tasks (all weights 0 and
/// every base met).
pub fn pick<'a>(
    strategy: &'a [CapacityProviderStrategyItem],
    counts: &HashMap<String, usize>,
) -> Option<&'a str> {
    let n = |p: &str| counts.get(p).copied().unwrap_or(0) as i64;
    if let Some(b) = strategy
        .iter()
        .find(|i| i.base > 0 && n(&i.capacity_provider) < i.base)
    {
        return Some(&b.capacity_provider);
    }
    // Tasks above the bases are shared by weight: the provider whose count above
    // its base, per unit of weight, is lowest goes next (ties: the heavier one).
    strategy
        .iter()
        .filter(|i| i.weight > 0)
        .min_by(|a, b| {
            let above = |i: &CapacityProviderStrategyItem| {
                (n(&i.capacity_provider) - i.base).max(0) as f64 / i.weight as f64
            };
            above(a).total_cmp(&above(b)).then(b.weight.cmp(&a.weight))
        })
        .map(|i| i.capacity_provider.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(p: &str, base: i64, weight: i64) -> CapacityProviderStrategyItem {
        CapacityProviderStrategyItem {
            capacity_provider: p.into(),
            base,
            weight,
        }
    }

    #[test]
    fn base_first_then_by_weight() {
        let s = [item("FARGATE", 1, 1), item("FARGATE_SPOT", 0, 3)];
        let mut counts = HashMap::new();
        let mut order = vec![];
        for _ in 0..9 {
            let p = pick(&s, &counts).unwrap().to_string();
            *counts.entry(p.clone()).or_default() += 1;
            order.push(p);
        }
        assert_eq!(order[0], "FARGATE", "the base first");
        // 8 above the base, shared 1:3.
        assert_eq!(counts["FARGATE"], 1 + 2);
        assert_eq!(counts["FARGATE_SPOT"], 6);
        assert_eq!(pick(&[item("FARGATE", 2, 0)], &counts), None);
    }
}
