//! The engine's pooled slots (instances, core instances, memories, tables) divided among an
//! app's components. The pool is preallocated for the whole engine, but one component
//! instance may take up to 16 memories: undivided, one component under load takes every
//! slot and its neighbours' calls fail. Each component gets a share of concurrent
//! instances sized from what one of its instances takes, checked when the app loads; an
//! instance beyond its share is refused with an error that names the component.

use crate::engine::{MAX_CORE_INSTANCES_PER_COMPONENT, MAX_MEMORIES_PER_COMPONENT, MAX_TABLES_PER_COMPONENT, Pooling};
use membrane_manifest::MAX_INSTANCE_SLOTS;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Component;

/// What one instance of a component takes from the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotNeeds {
    /// Component instances: one, and one more for each provider that lives in its store.
    pub instances: u32,
    pub core_instances: u32,
    pub memories: u32,
    pub tables: u32,
}

impl SlotNeeds {
    /// Read from the compiled component (the memories and tables of every core instance
    /// it makes) and its binary (the core instances). What cannot be read statically (a
    /// component that imports core modules) is assumed to be the most one may take.
    pub fn of(component: &Component, bytes: &[u8]) -> SlotNeeds {
        let (memories, tables) = match component.resources_required() {
            Some(r) => (r.num_memories, r.num_tables),
            None => (MAX_MEMORIES_PER_COMPONENT, MAX_TABLES_PER_COMPONENT),
        };
        let mut core_instances = 0u32;
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload {
                Ok(wasmparser::Payload::InstanceSection(section)) => {
                    let made =
                        section.into_iter().filter(|i| matches!(i, Ok(wasmparser::Instance::Instantiate { .. })));
                    core_instances = core_instances.saturating_add(made.count() as u32);
                }
                Ok(_) => {}
                Err(_) => {
                    core_instances = MAX_CORE_INSTANCES_PER_COMPONENT;
                    break;
                }
            }
        }
        SlotNeeds { instances: 1, core_instances, memories, tables }
    }

    /// What an instance takes together with `other`, an instance made in its store.
    pub fn with(self, other: SlotNeeds) -> SlotNeeds {
        SlotNeeds {
            instances: self.instances + other.instances,
            core_instances: self.core_instances + other.core_instances,
            memories: self.memories + other.memories,
            tables: self.tables + other.tables,
        }
    }

    /// Per kind of slot: its name, what one instance takes, the engine's total, and the
    /// most one component instance may take (times the instances it counts).
    fn kinds(&self, pooling: &Pooling) -> [(&'static str, u32, u32, u32); 4] {
        let max = |per_instance: u32| per_instance.saturating_mul(self.instances);
        [
            ("component instances", self.instances, pooling.instances, self.instances),
            ("core instances", self.core_instances, pooling.core_instances(), max(MAX_CORE_INSTANCES_PER_COMPONENT)),
            ("memories", self.memories, pooling.memories(), max(MAX_MEMORIES_PER_COMPONENT)),
            ("tables", self.tables, pooling.tables(), max(MAX_TABLES_PER_COMPONENT)),
        ]
    }
}

/// How many instances of a component may be alive at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Exactly this many: a singleton (1) or a pool of N that nothing else instantiates.
    Fixed(u32),
    /// An equal part of what the fixed claims leave: per-call components, and any
    /// component that serves HTTP or runs as the entry (each request or run is a fresh
    /// instance, whatever its mode).
    Share,
}

/// An app whose components cannot all have a slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error(
        "component `{component}` makes {needed} {kind} per instance, more than the {max} the engine \
         allows one component instance; build it with fewer"
    )]
    TooLarge { component: String, kind: &'static str, needed: u32, max: u32 },
    #[error(
        "component `{component}` takes {needed} {kind} per instance, and its part of the app's \
         {total} pooled {kind} ([app] max_instances = {instances}) holds no whole instance; {fix}"
    )]
    DoesNotFit { component: String, kind: &'static str, needed: u32, total: u32, instances: u32, fix: String },
}

/// A component's share of the pool: at most `share` of its instances alive at once.
#[derive(Debug, Clone)]
pub struct InstanceSlots {
    semaphore: Arc<Semaphore>,
    pub share: u32,
    pub needs: SlotNeeds,
}

impl InstanceSlots {
    pub fn new(share: u32, needs: SlotNeeds) -> InstanceSlots {
        InstanceSlots { semaphore: Arc::new(Semaphore::new(share as usize)), share, needs }
    }

    /// These slots again when the share is the same (a new version of a running app,
    /// whose in-flight instances still hold the old version's permits), else new ones.
    pub fn carried_over(previous: Option<&InstanceSlots>, share: u32, needs: SlotNeeds) -> InstanceSlots {
        match previous {
            Some(p) if p.share == share && p.needs == needs => p.clone(),
            _ => InstanceSlots::new(share, needs),
        }
    }

    /// One instance's slot, held for as long as its store lives; `None` when all are taken.
    pub fn claim(&self) -> Option<OwnedSemaphorePermit> {
        self.semaphore.clone().try_acquire_owned().ok()
    }
}

/// Divides `pooling`'s slots among `components` (name, needs, claim): the share of each, in
/// order, so that all of them at their shares at once still fit in the pool.
pub fn divide(pooling: &Pooling, components: &[(String, SlotNeeds, Claim)]) -> Result<Vec<u32>, SlotError> {
    for (name, needs, _) in components {
        if let Some((kind, needed, _, max)) = needs.kinds(pooling).into_iter().find(|(_, n, _, max)| n > max) {
            return Err(SlotError::TooLarge { component: name.clone(), kind, needed, max });
        }
    }
    shares(pooling, components).map_err(|(at, kind)| {
        let (name, needs, _) = &components[at];
        let (kind, needed, total, _) = needs.kinds(pooling).into_iter().find(|k| k.0 == kind).expect("a known kind");
        // The fewest instance slots that give every component a whole instance, if any do.
        let fits = |n: u32| shares(&Pooling { instances: n, ..*pooling }, components).is_ok();
        let fix = match fits(MAX_INSTANCE_SLOTS) {
            false => {
                format!("no [app] max_instances up to {MAX_INSTANCE_SLOTS} fits it; use fewer or smaller components")
            }
            true => {
                let (mut low, mut high) = (pooling.instances, MAX_INSTANCE_SLOTS);
                while high - low > 1 {
                    let mid = low + (high - low) / 2;
                    if fits(mid) { high = mid } else { low = mid }
                }
                format!("raise [app] max_instances to at least {high}")
            }
        };
        SlotError::DoesNotFit { component: name.clone(), kind, needed, total, instances: pooling.instances, fix }
    })
}

/// The shares, or which component (and kind of slot) gets no whole instance.
fn shares(pooling: &Pooling, components: &[(String, SlotNeeds, Claim)]) -> Result<Vec<u32>, (usize, &'static str)> {
    let sharers = components.iter().filter(|(_, _, claim)| *claim == Claim::Share).count() as u64;
    let kinds = |needs: &SlotNeeds| needs.kinds(pooling);
    // What the fixed claims take, per kind of slot.
    let mut left: Vec<u64> = kinds(&SlotNeeds { instances: 0, core_instances: 0, memories: 0, tables: 0 })
        .iter()
        .map(|(_, _, total, _)| u64::from(*total))
        .collect();
    for (at, (_, needs, claim)) in components.iter().enumerate() {
        if let Claim::Fixed(n) = claim {
            for (k, (kind, needed, _, _)) in kinds(needs).into_iter().enumerate() {
                let taken = u64::from(*n) * u64::from(needed);
                left[k] = left[k].checked_sub(taken).ok_or((at, kind))?;
            }
        }
    }
    let mut shares = Vec::with_capacity(components.len());
    for (at, (_, needs, claim)) in components.iter().enumerate() {
        let share = match claim {
            Claim::Fixed(n) => u64::from(*n),
            Claim::Share => {
                let mut share = u64::MAX;
                for (k, (kind, needed, _, _)) in kinds(needs).into_iter().enumerate() {
                    if needed > 0 {
                        share = share.min(left[k] / (sharers * u64::from(needed)));
                        if share == 0 {
                            return Err((at, kind));
                        }
                    }
                }
                share
            }
        };
        shares.push(u32::try_from(share).unwrap_or(u32::MAX));
    }
    Ok(shares)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(instances: u32) -> Pooling {
        Pooling { instances, max_memory: 1 << 20, table_elements: 1000 }
    }

    fn needs(core_instances: u32, memories: u32, tables: u32) -> SlotNeeds {
        SlotNeeds { instances: 1, core_instances, memories, tables }
    }

    #[test]
    fn a_many_memories_component_gets_a_smaller_share_and_the_rest_still_fit() {
        let app = [
            ("site".to_string(), needs(4, 1, 2), Claim::Share),
            ("plugin".to_string(), needs(16, 16, 16), Claim::Share),
            ("store".to_string(), needs(4, 1, 2), Claim::Fixed(1)),
        ];
        let shares = divide(&pool(1000), &app).unwrap();
        // 1,999 memory slots left by the singleton, half of them for the plugin's 16 each.
        assert_eq!(shares, [499, 62, 1]);
        // All at their shares at once fit in every kind of slot.
        for (kind, total) in [(0, 1000), (1, 8000), (2, 2000), (3, 4000)] {
            let used: u32 = app.iter().zip(&shares).map(|((_, n, _), s)| n.kinds(&pool(1000))[kind].1 * s).sum();
            assert!(used <= total, "kind {kind}: {used} of {total}");
        }
    }

    #[test]
    fn an_app_that_cannot_fit_says_how_many_slots_would_do() {
        let app =
            [("a".to_string(), needs(16, 16, 2), Claim::Share), ("b".to_string(), needs(16, 16, 2), Claim::Share)];
        let error = divide(&pool(10), &app).unwrap_err();
        // Each needs 16 of the 2 × n memory slots, in halves: n = 16 is the least.
        assert_eq!(
            error,
            SlotError::DoesNotFit {
                component: "a".into(),
                kind: "memories",
                needed: 16,
                total: 20,
                instances: 10,
                fix: "raise [app] max_instances to at least 16".into()
            }
        );
        assert!(divide(&pool(16), &app).is_ok());
        let huge = [("x".to_string(), needs(65, 1, 1), Claim::Share)];
        assert!(matches!(divide(&pool(1000), &huge), Err(SlotError::TooLarge { needed: 65, .. })));
    }
}
