//! The group coordinator for the classic consumer-group protocol: group
//! membership (a pure state machine per group, `state`), the members
//! waiting in JoinGroup and SyncGroup, session expiry, and committed
//! offsets (`offsets`).

pub mod offsets;
pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::{oneshot, watch};

use self::offsets::OffsetStore;
use self::state::{Completed, Group, GroupState, JoinArgs, JoinOutcome, SyncOutcome};

/// How often sessions and rebalance deadlines are checked.
const TICK: Duration = Duration::from_millis(200);
/// Groups one coordinator keeps.
pub const GROUPS_MAX: usize = 100_000;

#[derive(Debug, Default)]
struct Slot {
    group: Option<Group>,
    joins: HashMap<String, oneshot::Sender<JoinOutcome>>,
    syncs: HashMap<String, oneshot::Sender<SyncOutcome>>,
}

impl Slot {
    fn deliver(&mut self, completed: Completed) {
        for (member, outcome) in completed.joins {
            if let Some(waiter) = self.joins.remove(&member) {
                let _ = waiter.send(outcome);
            }
        }
        for (member, outcome) in completed.syncs {
            if let Some(waiter) = self.syncs.remove(&member) {
                let _ = waiter.send(outcome);
            }
        }
    }

    fn group(&mut self, id: &str) -> &mut Group {
        self.group.get_or_insert_with(|| Group::new(id))
    }
}

/// A snapshot of one group for DescribeGroups and `freshet group`.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

#[derive(Debug)]
pub struct Coordinator {
    slots: Mutex<HashMap<String, Slot>>,
    pub offsets: OffsetStore,
}

impl Coordinator {
    pub fn new(offsets: OffsetStore) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            offsets,
        }
    }

    /// Expires sessions and rebalance phases until `stopped`.
    pub fn run_ticks(
        self: &Arc<Self>,
        mut stopped: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let coordinator = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(TICK);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.changed() => return,
                }
                let now = Instant::now();
                let mut slots = coordinator.slots.lock().expect("groups lock");
                for slot in slots.values_mut() {
                    if let Some(group) = slot.group.as_mut() {
                        let completed = group.tick(now);
                        slot.deliver(completed);
                    }
                }
            }
        })
    }

    pub async fn join(&self, group_id: &str, args: JoinArgs) -> JoinOutcome {
        let waiting = {
            let mut slots = self.slots.lock().expect("groups lock");
            if !slots.contains_key(group_id) && slots.len() >= GROUPS_MAX {
                return JoinOutcome::error(ResponseError::GroupMaxSizeReached, &args.member_id);
            }
            let slot = slots.entry(group_id.to_string()).or_default();
            let (answer, member_id, completed) = slot.group(group_id).join(args, Instant::now());
            let waiting = match answer {
                Some(answer) => Err(answer),
                None => {
                    let (sender, receiver) = oneshot::channel();
                    slot.joins.insert(member_id.clone(), sender);
                    Ok((member_id, receiver))
                }
            };
            slot.deliver(completed);
            waiting
        };
        match waiting {
            Err(answer) => answer,
            Ok((member_id, receiver)) => receiver.await.unwrap_or_else(|_| {
                JoinOutcome::error(ResponseError::RebalanceInProgress, &member_id)
            }),
        }
    }

    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        let waiting = {
            let mut slots = self.slots.lock().expect("groups lock");
            let Some(slot) = slots.get_mut(group_id) else {
                return SyncOutcome::error(ResponseError::UnknownMemberId);
            };
            let (answer, completed) =
                slot.group(group_id)
                    .sync(member_id, generation, assignments, Instant::now());
            let waiting = match answer {
                Some(answer) => Err(answer),
                None => {
                    let (sender, receiver) = oneshot::channel();
                    slot.syncs.insert(member_id.to_string(), sender);
                    Ok(receiver)
                }
            };
            slot.deliver(completed);
            waiting
        };
        match waiting {
            Err(answer) => answer,
            Ok(receiver) => receiver
                .await
                .unwrap_or_else(|_| SyncOutcome::error(ResponseError::RebalanceInProgress)),
        }
    }

    pub fn heartbeat(&self, group_id: &str, member_id: &str, generation: i32) -> i16 {
        let mut slots = self.slots.lock().expect("groups lock");
        match slots.get_mut(group_id).and_then(|slot| slot.group.as_mut()) {
            Some(group) => group.heartbeat(member_id, generation, Instant::now()),
            None => ResponseError::UnknownMemberId.code(),
        }
    }

    pub fn leave(&self, group_id: &str, member_id: &str, instance_id: Option<&str>) -> i16 {
        let mut slots = self.slots.lock().expect("groups lock");
        let Some(slot) = slots.get_mut(group_id) else {
            return ResponseError::UnknownMemberId.code();
        };
        let (code, completed) = slot
            .group(group_id)
            .leave(member_id, instance_id, Instant::now());
        slot.deliver(completed);
        code
    }

    /// Whether a member may commit for `group_id` now.
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let slots = self.slots.lock().expect("groups lock");
        match slots.get(group_id).and_then(|slot| slot.group.as_ref()) {
            Some(group) => group.check_commit(member_id, generation),
            None if generation < 0 => Ok(()),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupView> {
        let slots = self.slots.lock().expect("groups lock");
        let group = slots.get(group_id).and_then(|slot| slot.group.as_ref());
        match group {
            Some(group) => {
                let protocol = group.protocol.clone().unwrap_or_default();
                let stable = group.state == GroupState::Stable;
                Some(GroupView {
                    id: group.id.clone(),
                    state: group.state.name(),
                    protocol_type: group.protocol_type.clone().unwrap_or_default(),
                    protocol: if stable {
                        protocol.clone()
                    } else {
                        String::new()
                    },
                    members: group
                        .members
                        .values()
                        .map(|m| {
                            let metadata = m
                                .protocols
                                .iter()
                                .find(|(n, _)| *n == protocol)
                                .map(|(_, b)| b.clone())
                                .unwrap_or_default();
                            let assignment = if stable {
                                m.assignment.clone()
                            } else {
                                Bytes::new()
                            };
                            (
                                m.id.clone(),
                                m.instance_id.clone(),
                                m.client_id.clone(),
                                m.client_host.clone(),
                                metadata,
                                assignment,
                            )
                        })
                        .collect(),
                })
            }
            None if self.offsets.groups().iter().any(|g| g == group_id) => Some(GroupView {
                id: group_id.to_string(),
                state: GroupState::Empty.name(),
                protocol_type: "consumer".into(),
                protocol: String::new(),
                members: Vec::new(),
            }),
            None => None,
        }
    }

    /// Every group known by membership or by committed offsets.
    pub fn list(&self) -> Vec<GroupView> {
        let mut ids: Vec<String> = self
            .slots
            .lock()
            .expect("groups lock")
            .keys()
            .cloned()
            .collect();
        ids.extend(self.offsets.groups());
        ids.sort();
        ids.dedup();
        ids.iter().filter_map(|id| self.describe(id)).collect()
    }

    /// Deletes an empty group and its offsets.
    pub async fn delete(&self, group_id: &str) -> i16 {
        {
            let mut slots = self.slots.lock().expect("groups lock");
            if let Some(slot) = slots.get(group_id)
                && slot.group.as_ref().is_some_and(|g| !g.members.is_empty())
            {
                return ResponseError::NonEmptyGroup.code();
            }
            slots.remove(group_id);
        }
        match self.offsets.delete_group(group_id).await {
            Ok(true) => 0,
            Ok(false) => ResponseError::GroupIdNotFound.code(),
            Err(error) => crate::errors::code(&error),
        }
    }
}
