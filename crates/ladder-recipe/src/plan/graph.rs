//! The stage graph: each stage depends on its `from` stage and, for DPO, its `pairs` stage.

use std::collections::HashMap;

use crate::schema::Stage;

/// Stages in dependency order (declaration order among independent ones), or a cycle.
pub(super) fn topo_order(stages: &[Stage]) -> std::result::Result<Vec<usize>, Vec<String>> {
    let index: HashMap<&str, usize> = stages.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let deps = |s: &Stage| -> Vec<usize> {
        let mut d: Vec<usize> = index.get(s.from.as_str()).into_iter().copied().collect();
        if let Some(p) = s.pairs.as_deref().and_then(|p| index.get(p)) {
            d.push(*p);
        }
        d
    };
    let mut state = vec![0u8; stages.len()]; // 0 new, 1 visiting, 2 done
    let mut order = Vec::new();
    fn visit(
        i: usize,
        stages: &[Stage],
        deps: &dyn Fn(&Stage) -> Vec<usize>,
        state: &mut [u8],
        order: &mut Vec<usize>,
        path: &mut Vec<usize>,
    ) -> std::result::Result<(), Vec<String>> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let from = path.iter().position(|&p| p == i).unwrap_or(0);
                let mut cycle: Vec<String> = path[from..].iter().map(|&p| stages[p].name.clone()).collect();
                cycle.push(stages[i].name.clone());
                return Err(cycle);
            }
            _ => {}
        }
        state[i] = 1;
        path.push(i);
        for d in deps(&stages[i]) {
            visit(d, stages, deps, state, order, path)?;
        }
        path.pop();
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..stages.len() {
        visit(i, stages, &deps, &mut state, &mut order, &mut Vec::new())?;
    }
    Ok(order)
}

