//! The order of a plan: the stage graph (which stage reads which) with its cycle check and
//! topological order, the axis display order, and the instance DAG. Both graphs are petgraph's.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use super::Instance;
use super::bind::own_axes;
use crate::spec::StageSpec;

/// Stages as a DAG: node i is stage i (file order); edges point from producer to consumer.
pub(super) struct StageGraph {
    graph: DiGraph<usize, ()>,
}

impl StageGraph {
    pub(super) fn new(stages: usize) -> StageGraph {
        let mut graph = DiGraph::with_capacity(stages, stages);
        for i in 0..stages {
            graph.add_node(i);
        }
        StageGraph { graph }
    }

    /// Record that stage `consumer` reads stage `producer` (one edge per pair).
    pub(super) fn read(&mut self, consumer: usize, producer: usize) {
        let (from, to) = (NodeIndex::new(producer), NodeIndex::new(consumer));
        if self.graph.find_edge(from, to).is_none() {
            self.graph.add_edge(from, to, ());
        }
    }

    /// The stages `i` reads, in file order.
    fn producers(&self, i: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self.graph.neighbors_directed(NodeIndex::new(i), Direction::Incoming).map(|n| n.index()).collect();
        v.sort_unstable();
        v
    }

    /// A cycle, if the stages have one: stage indices in data-flow order, from a stage back to it.
    pub(super) fn cycle(&self) -> Option<Vec<usize>> {
        let err = petgraph::algo::toposort(&self.graph, None).err()?;
        Some(self.cycle_through(err.node_id().index()))
    }

    /// A cycle through `start` (which petgraph found on one), walking what each stage reads.
    fn cycle_through(&self, start: usize) -> Vec<usize> {
        fn dfs(g: &StageGraph, node: usize, path: &mut Vec<usize>, on: &mut BTreeSet<usize>) -> Option<Vec<usize>> {
            path.push(node);
            on.insert(node);
            for d in g.producers(node) {
                if on.contains(&d) {
                    let i = path.iter().position(|&x| x == d).unwrap_or(0);
                    let mut cycle: Vec<usize> = path[i..].to_vec();
                    cycle.reverse();
                    // data-flow order: d feeds the last stage on the path, ..., which feeds d
                    cycle.insert(0, d);
                    return Some(cycle);
                }
                if let Some(c) = dfs(g, d, path, on) {
                    return Some(c);
                }
            }
            path.pop();
            on.remove(&node);
            None
        }
        dfs(self, start, &mut Vec::new(), &mut BTreeSet::new()).unwrap_or_else(|| vec![start, start])
    }

    /// Topological order with ties broken by file order (Kahn's algorithm over the graph).
    pub(super) fn order(&self) -> Vec<usize> {
        let n = self.graph.node_count();
        let mut indeg: Vec<usize> = (0..n).map(|i| self.producers(i).len()).collect();
        let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for j in self.graph.neighbors_directed(NodeIndex::new(i), Direction::Outgoing) {
                let j = j.index();
                indeg[j] -= 1;
                if indeg[j] == 0 {
                    ready.insert(j);
                }
            }
        }
        order
    }

    /// Each stage's depth: the longest path to it from a stage that reads none.
    pub(super) fn depths(&self, order: &[usize]) -> Vec<usize> {
        let mut depth = vec![0usize; self.graph.node_count()];
        for &i in order {
            depth[i] = self.producers(i).iter().map(|&j| depth[j] + 1).max().unwrap_or(0);
        }
        depth
    }
}

/// Axis display order: by (depth, stage name) of the first stage introducing the axis, then name.
pub(super) fn axis_order(stages: &[StageSpec], order: &[usize], depth: &[usize]) -> Vec<String> {
    let mut axis_rank: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for &i in order {
        let s = &stages[i];
        for name in own_axes(s) {
            let rank = (depth[i], s.name.clone());
            axis_rank.entry(name).and_modify(|r| *r = r.clone().min(rank.clone())).or_insert(rank);
        }
    }
    let mut axes: Vec<String> = axis_rank.keys().cloned().collect();
    axes.sort_by(|a, b| axis_rank[a].cmp(&axis_rank[b]).then_with(|| a.cmp(b)));
    axes
}

/// The instance DAG: node i is `instances[i]`; one edge per (producer, consumer) pair.
pub(super) fn instance_graph(instances: &[Instance]) -> DiGraph<usize, ()> {
    let mut graph = DiGraph::<usize, ()>::with_capacity(instances.len(), instances.len());
    let nodes: Vec<NodeIndex> = (0..instances.len()).map(|i| graph.add_node(i)).collect();
    for inst in instances {
        let mut seen = BTreeSet::new();
        for input in &inst.inputs {
            for item in &input.items {
                if seen.insert(item.instance) {
                    graph.add_edge(nodes[item.instance], nodes[inst.index], ());
                }
            }
        }
    }
    graph
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_reported_in_order() {
        // 0 <- 2, 1 <- 0, 2 <- 1  (stage i reads the stages listed)
        let mut g = StageGraph::new(3);
        g.read(0, 2);
        g.read(1, 0);
        g.read(2, 1);
        let c = g.cycle_through(0);
        assert_eq!(c.first(), c.last());
        assert_eq!(c.len(), 4);
        assert!(g.cycle().is_some());
    }

    #[test]
    fn ties_keep_file_order() {
        // 3 reads 0; 1 and 2 read nothing: 0, 1, 2 are ready at once and come in file order
        let mut g = StageGraph::new(4);
        g.read(3, 0);
        g.read(3, 0);
        assert_eq!(g.order(), vec![0, 1, 2, 3]);
        assert_eq!(g.depths(&g.order()), vec![0, 0, 0, 1]);
        assert!(g.cycle().is_none());
    }
}
