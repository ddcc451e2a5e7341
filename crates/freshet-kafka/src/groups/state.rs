//! One consumer group's membership under the classic rebalance protocol,
//! as a pure state machine: every operation takes the current time and
//! returns the answers it can give now plus the answers it completes for
//! members that were waiting (in JoinGroup or SyncGroup).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;

/// Session timeouts a member may ask for (Kafka's group.min/max.session.timeout.ms,
/// with a lower minimum so tests and local runs can use short ones).
pub const SESSION_TIMEOUT_MIN: Duration = Duration::from_millis(1_000);
pub const SESSION_TIMEOUT_MAX: Duration = Duration::from_secs(30 * 60);
/// Members one group may have.
pub const MEMBERS_PER_GROUP_MAX: usize = 1_000;
/// A member id handed out with MEMBER_ID_REQUIRED is forgotten if the
/// member does not join with it within this time.
const PENDING_MEMBER_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The names Kafka's tools show.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub assignment: Bytes,
    last_seen: Instant,
    joined: bool,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A JoinGroup request, decoded.
#[derive(Debug, Clone)]
pub struct JoinArgs {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// JoinGroup v4+ clients take a member id from MEMBER_ID_REQUIRED first.
    pub requires_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinOutcome {
    pub error_code: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// (member id, instance id, metadata): only the leader gets them.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    pub fn error(code: ResponseError, member_id: &str) -> Self {
        Self {
            error_code: code.code(),
            generation: -1,
            protocol_type: None,
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncOutcome {
    pub error_code: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub fn error(code: ResponseError) -> Self {
        Self {
            error_code: code.code(),
            protocol_type: None,
            protocol: None,
            assignment: Bytes::new(),
        }
    }
}

/// Answers completed for members that were waiting.
#[derive(Debug, Default)]
pub struct Completed {
    pub joins: Vec<(String, JoinOutcome)>,
    pub syncs: Vec<(String, SyncOutcome)>,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    pending: HashMap<String, Instant>,
    awaiting_sync: HashSet<String>,
    /// When the current join or sync phase gives up on missing members.
    phase_deadline: Option<Instant>,
    next_member: u64,
}

impl Group {
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            awaiting_sync: HashSet::new(),
            phase_deadline: None,
            next_member: 0,
        }
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("{client_id}-{nanos:x}-{}", self.next_member)
    }

    fn member_by_instance(&self, instance_id: &str) -> Option<String> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
            .map(|m| m.id.clone())
    }

    /// JoinGroup: `Some` answers now; `None` means the member (whose id is
    /// returned too) waits for the rebalance to complete; its answer then
    /// comes in a `Completed`.
    pub fn join(
        &mut self,
        args: JoinArgs,
        now: Instant,
    ) -> (Option<JoinOutcome>, String, Completed) {
        let requested = args.member_id.clone();
        let (answer, member_id, completed) = self.join_inner(args, now);
        (answer, member_id.unwrap_or(requested), completed)
    }

    fn join_inner(
        &mut self,
        args: JoinArgs,
        now: Instant,
    ) -> (Option<JoinOutcome>, Option<String>, Completed) {
        let mut completed = Completed::default();
        if args.protocol_type.is_empty() || args.protocols.is_empty() {
            return (
                Some(JoinOutcome::error(
                    ResponseError::InconsistentGroupProtocol,
                    &args.member_id,
                )),
                None,
                completed,
            );
        }
        if !(SESSION_TIMEOUT_MIN..=SESSION_TIMEOUT_MAX).contains(&args.session_timeout) {
            return (
                Some(JoinOutcome::error(
                    ResponseError::InvalidSessionTimeout,
                    &args.member_id,
                )),
                None,
                completed,
            );
        }
        let others_agree = self
            .members
            .values()
            .filter(|m| m.id != args.member_id)
            .all(|m| {
                m.protocols
                    .iter()
                    .any(|(name, _)| args.protocols.iter().any(|(theirs, _)| theirs == name))
            });
        if self
            .protocol_type
            .as_ref()
            .is_some_and(|t| *t != args.protocol_type && !self.members.is_empty())
            || !others_agree
        {
            return (
                Some(JoinOutcome::error(
                    ResponseError::InconsistentGroupProtocol,
                    &args.member_id,
                )),
                None,
                completed,
            );
        }
        let mut member_id = args.member_id.clone();
        if member_id.is_empty() {
            if let Some(instance) = &args.instance_id
                && let Some(existing) = self.member_by_instance(instance)
            {
                // A static member coming back: it takes over its old
                // membership, and a stable group keeps its assignment.
                let mut member = self
                    .members
                    .remove(&existing)
                    .expect("member found by instance");
                let new_id = self.new_member_id(&args.client_id);
                member.id = new_id.clone();
                member.last_seen = now;
                if self.leader.as_deref() == Some(existing.as_str()) {
                    self.leader = Some(new_id.clone());
                }
                let unchanged = member.protocols == args.protocols;
                self.members.insert(new_id.clone(), member);
                if self.state == GroupState::Stable && unchanged {
                    let outcome = JoinOutcome {
                        error_code: 0,
                        generation: self.generation,
                        protocol_type: self.protocol_type.clone(),
                        protocol: self.protocol.clone(),
                        leader: self.leader.clone().unwrap_or_default(),
                        member_id: new_id,
                        members: Vec::new(),
                    };
                    return (Some(outcome), None, completed);
                }
                member_id = new_id;
            } else {
                if self.members.len() + self.pending.len() >= MEMBERS_PER_GROUP_MAX {
                    return (
                        Some(JoinOutcome::error(ResponseError::GroupMaxSizeReached, "")),
                        None,
                        completed,
                    );
                }
                member_id = self.new_member_id(&args.client_id);
                if args.requires_known_member_id {
                    self.pending.insert(member_id.clone(), now);
                    return (
                        Some(JoinOutcome::error(
                            ResponseError::MemberIdRequired,
                            &member_id,
                        )),
                        None,
                        completed,
                    );
                }
            }
        } else if !self.members.contains_key(&member_id)
            && self.pending.remove(&member_id).is_none()
        {
            return (
                Some(JoinOutcome::error(
                    ResponseError::UnknownMemberId,
                    &member_id,
                )),
                None,
                completed,
            );
        }
        // A known member rejoining with nothing changed does not disturb the
        // group (Kafka's rule): a follower in a stable group, or anyone while
        // assignments are being handed out, gets the current generation back.
        if let Some(existing) = self.members.get_mut(&member_id)
            && existing.protocols == args.protocols
        {
            let is_leader = self.leader.as_deref() == Some(member_id.as_str());
            let current = match self.state {
                GroupState::Stable if !is_leader => true,
                GroupState::CompletingRebalance => true,
                _ => false,
            };
            if current {
                existing.last_seen = now;
                let protocol = self.protocol.clone().unwrap_or_default();
                let members = if is_leader {
                    self.members
                        .values()
                        .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                        .collect()
                } else {
                    Vec::new()
                };
                let outcome = JoinOutcome {
                    error_code: 0,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    leader: self.leader.clone().unwrap_or_default(),
                    member_id: member_id.clone(),
                    members,
                };
                return (Some(outcome), None, completed);
            }
        }
        let member = Member {
            id: member_id.clone(),
            instance_id: args.instance_id,
            client_id: args.client_id,
            client_host: args.client_host,
            protocols: args.protocols,
            session_timeout: args.session_timeout,
            rebalance_timeout: args.rebalance_timeout,
            assignment: self
                .members
                .get(&member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
            last_seen: now,
            joined: true,
        };
        self.members.insert(member_id.clone(), member);
        self.protocol_type = Some(args.protocol_type);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now, &mut completed);
            self.members
                .get_mut(&member_id)
                .expect("just inserted")
                .joined = true;
        }
        self.complete_join_if_ready(now, false, &mut completed);
        (None, Some(member_id), completed)
    }

    /// Starts a rebalance: every member must join again.
    fn prepare_rebalance(&mut self, now: Instant, completed: &mut Completed) {
        for waiting in self.awaiting_sync.drain() {
            completed.syncs.push((
                waiting,
                SyncOutcome::error(ResponseError::RebalanceInProgress),
            ));
        }
        self.state = GroupState::PreparingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(60));
        self.phase_deadline = Some(now + timeout);
        for member in self.members.values_mut() {
            member.joined = false;
        }
    }

    fn complete_join_if_ready(
        &mut self,
        now: Instant,
        deadline_passed: bool,
        completed: &mut Completed,
    ) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.joined);
        if !all_joined && !deadline_passed {
            return;
        }
        self.members.retain(|_, m| m.joined);
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            self.phase_deadline = None;
            return;
        }
        let first = self.members.values().next().expect("non-empty");
        let protocol = first
            .protocols
            .iter()
            .map(|(name, _)| name.clone())
            .find(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
            .expect("join checked that members share a protocol");
        if !self
            .leader
            .as_ref()
            .is_some_and(|leader| self.members.contains_key(leader))
        {
            self.leader = Some(first.id.clone());
        }
        let leader = self.leader.clone().expect("chosen above");
        let roster: Vec<(String, Option<String>, Bytes)> = self
            .members
            .values()
            .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
            .collect();
        for member in self.members.values_mut() {
            member.joined = false;
            member.last_seen = now;
            completed.joins.push((
                member.id.clone(),
                JoinOutcome {
                    error_code: 0,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: Some(protocol.clone()),
                    leader: leader.clone(),
                    member_id: member.id.clone(),
                    members: if member.id == leader {
                        roster.clone()
                    } else {
                        Vec::new()
                    },
                },
            ));
        }
        self.protocol = Some(protocol);
        self.state = GroupState::CompletingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(60));
        self.phase_deadline = Some(now + timeout);
    }

    fn check_member(&self, member_id: &str, generation: i32) -> Result<(), ResponseError> {
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// SyncGroup: the leader hands out assignments; others wait for them.
    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> (Option<SyncOutcome>, Completed) {
        let mut completed = Completed::default();
        if let Err(error) = self.check_member(member_id, generation) {
            return (Some(SyncOutcome::error(error)), completed);
        }
        self.members.get_mut(member_id).expect("checked").last_seen = now;
        match self.state {
            GroupState::Empty => {
                return (
                    Some(SyncOutcome::error(ResponseError::UnknownMemberId)),
                    completed,
                );
            }
            GroupState::PreparingRebalance => {
                return (
                    Some(SyncOutcome::error(ResponseError::RebalanceInProgress)),
                    completed,
                );
            }
            GroupState::Stable => return (Some(self.assignment_of(member_id)), completed),
            GroupState::CompletingRebalance => {}
        }
        self.awaiting_sync.insert(member_id.to_string());
        if self.leader.as_deref() == Some(member_id) {
            let mut assigned: HashMap<String, Bytes> = assignments.into_iter().collect();
            for member in self.members.values_mut() {
                member.assignment = assigned.remove(&member.id).unwrap_or_default();
            }
            self.state = GroupState::Stable;
            self.phase_deadline = None;
            for waiting in std::mem::take(&mut self.awaiting_sync) {
                let outcome = self.assignment_of(&waiting);
                completed.syncs.push((waiting, outcome));
            }
        }
        (None, completed)
    }

    fn assignment_of(&self, member_id: &str) -> SyncOutcome {
        SyncOutcome {
            error_code: 0,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Heartbeat: keeps the member's session alive; tells it to rejoin
    /// when a rebalance is under way.
    pub fn heartbeat(&mut self, member_id: &str, generation: i32, now: Instant) -> i16 {
        let Some(member) = self.members.get_mut(member_id) else {
            return ResponseError::UnknownMemberId.code();
        };
        member.last_seen = now;
        if self.state == GroupState::PreparingRebalance {
            return ResponseError::RebalanceInProgress.code();
        }
        if generation != self.generation {
            return ResponseError::IllegalGeneration.code();
        }
        0
    }

    /// LeaveGroup for one member; the others rebalance.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> (i16, Completed) {
        let mut completed = Completed::default();
        let id = match (member_id.is_empty(), instance_id) {
            (true, Some(instance)) => self.member_by_instance(instance),
            _ => Some(member_id.to_string()).filter(|id| self.members.contains_key(id)),
        };
        let Some(id) = id else {
            return (ResponseError::UnknownMemberId.code(), completed);
        };
        self.remove_member(&id, now, &mut completed);
        (0, completed)
    }

    fn remove_member(&mut self, member_id: &str, now: Instant, completed: &mut Completed) {
        self.members.remove(member_id);
        self.awaiting_sync.remove(member_id);
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        match self.state {
            GroupState::PreparingRebalance => self.complete_join_if_ready(now, false, completed),
            _ if self.members.is_empty() => {
                for waiting in self.awaiting_sync.drain() {
                    completed.syncs.push((
                        waiting,
                        SyncOutcome::error(ResponseError::RebalanceInProgress),
                    ));
                }
                self.state = GroupState::Empty;
                self.generation += 1;
                self.protocol = None;
                self.phase_deadline = None;
            }
            _ => self.prepare_rebalance(now, completed),
        }
    }

    /// Expires sessions and phases that ran out of time.
    pub fn tick(&mut self, now: Instant) -> Completed {
        let mut completed = Completed::default();
        self.pending
            .retain(|_, since| now.duration_since(*since) < PENDING_MEMBER_TIMEOUT);
        let phase_over = self.phase_deadline.is_some_and(|deadline| now >= deadline);
        match self.state {
            GroupState::PreparingRebalance if phase_over => {
                self.complete_join_if_ready(now, true, &mut completed)
            }
            GroupState::CompletingRebalance if phase_over => {
                // The leader never sent assignments: start over.
                self.prepare_rebalance(now, &mut completed);
            }
            GroupState::Stable => {
                let expired: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| now.duration_since(m.last_seen) > m.session_timeout)
                    .map(|m| m.id.clone())
                    .collect();
                for id in expired {
                    tracing::info!(group = %self.id, member = %id, "member session expired");
                    self.remove_member(&id, now, &mut completed);
                }
            }
            _ => {}
        }
        completed
    }

    /// Whether a commit from this member at this generation is accepted.
    /// Commits from outside any generation (-1, no member) are accepted
    /// while the group has no members, as for manually assigned consumers.
    pub fn check_commit(&self, member_id: &str, generation: i32) -> Result<(), ResponseError> {
        if generation < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        self.check_member(member_id, generation)?;
        // Kafka's rule: the current generation may still commit while the
        // next rebalance gathers members, not while assignments are pending.
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(member_id: &str, protocol: &str) -> JoinArgs {
        JoinArgs {
            member_id: member_id.into(),
            instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            protocol_type: "consumer".into(),
            protocols: vec![(protocol.into(), Bytes::from_static(b"meta"))],
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            requires_known_member_id: true,
        }
    }

    /// Joins a new member through the MEMBER_ID_REQUIRED handshake.
    fn join_new(group: &mut Group, now: Instant) -> (String, Completed) {
        let (answer, _, _) = group.join(args("", "range"), now);
        let answer = answer.unwrap();
        assert_eq!(answer.error_code, ResponseError::MemberIdRequired.code());
        let (answer, member_id, completed) = group.join(args(&answer.member_id, "range"), now);
        assert!(answer.is_none());
        (member_id, completed)
    }

    /// A group whose one member has joined and synced generation 1.
    fn stable_group_of_one(now: Instant) -> (Group, String) {
        let mut group = Group::new("g");
        let (_, completed) = join_new(&mut group, now);
        let member = completed.joins[0].0.clone();
        group.sync(&member, 1, vec![], now);
        (group, member)
    }

    #[test]
    fn one_member_joins_syncs_and_becomes_stable() {
        let now = Instant::now();
        let mut group = Group::new("g");
        let (_, completed) = join_new(&mut group, now);
        assert_eq!(completed.joins.len(), 1);
        let (member, join) = &completed.joins[0];
        assert_eq!(join.generation, 1);
        assert_eq!(&join.leader, member);
        assert_eq!(join.members.len(), 1, "the leader gets the roster");
        let (answer, completed) = group.sync(
            member,
            1,
            vec![(member.clone(), Bytes::from_static(b"p0"))],
            now,
        );
        assert!(answer.is_none());
        assert_eq!(completed.syncs[0].1.assignment, Bytes::from_static(b"p0"));
        assert_eq!(group.state, GroupState::Stable);
        assert_eq!(group.heartbeat(member, 1, now), 0);
        assert_eq!(
            group.heartbeat(member, 0, now),
            ResponseError::IllegalGeneration.code()
        );
        assert_eq!(
            group.heartbeat("stranger", 1, now),
            ResponseError::UnknownMemberId.code()
        );
    }

    #[test]
    fn a_second_member_triggers_a_rebalance_that_waits_for_everyone() {
        let now = Instant::now();
        let mut group = Group::new("g");
        let (_, completed) = join_new(&mut group, now);
        let first = completed.joins[0].0.clone();
        group.sync(
            &first,
            1,
            vec![(first.clone(), Bytes::from_static(b"all"))],
            now,
        );
        // The second member's join waits until the first rejoins.
        let (answer, _, _) = group.join(args("", "range"), now);
        let (answer, _, completed) = group.join(args(&answer.unwrap().member_id, "range"), now);
        assert!(answer.is_none() && completed.joins.is_empty());
        assert_eq!(
            group.heartbeat(&first, 1, now),
            ResponseError::RebalanceInProgress.code()
        );
        let (answer, _, completed) = group.join(args(&first, "range"), now);
        assert!(answer.is_none());
        assert_eq!(completed.joins.len(), 2);
        assert!(
            completed
                .joins
                .iter()
                .all(|(_, j)| j.generation == 2 && j.leader == first)
        );
        let follower = completed
            .joins
            .iter()
            .find(|(id, _)| *id != first)
            .unwrap()
            .0
            .clone();
        // The follower's sync waits for the leader's.
        let (answer, completed) = group.sync(&follower, 2, vec![], now);
        assert!(answer.is_none() && completed.syncs.is_empty());
        let assignments = vec![
            (first.clone(), Bytes::from_static(b"a")),
            (follower.clone(), Bytes::from_static(b"b")),
        ];
        let (_, completed) = group.sync(&first, 2, assignments, now);
        let by_member: HashMap<_, _> = completed.syncs.into_iter().collect();
        assert_eq!(by_member[&follower].assignment, Bytes::from_static(b"b"));
        assert_eq!(by_member[&first].assignment, Bytes::from_static(b"a"));
    }

    #[test]
    fn members_that_miss_the_rebalance_deadline_or_their_session_are_dropped() {
        let now = Instant::now();
        let (mut group, first) = stable_group_of_one(now);
        let (answer, _, _) = group.join(args("", "range"), now);
        let second = answer.unwrap().member_id;
        group.join(args(&second, "range"), now);
        // The first member never rejoins: after the rebalance timeout the
        // second completes alone.
        let completed = group.tick(now + Duration::from_secs(31));
        assert_eq!(completed.joins.len(), 1);
        assert_eq!(completed.joins[0].0, second);
        assert!(!group.members.contains_key(&first));
        group.sync(&second, 2, vec![], now + Duration::from_secs(31));
        assert_eq!(group.state, GroupState::Stable);
        group.tick(now + Duration::from_secs(45));
        assert!(group.members.is_empty(), "session of 10 s expired");
        assert_eq!(group.state, GroupState::Empty);
    }

    #[test]
    fn leaving_rebalances_the_rest_and_unknown_members_are_refused() {
        let now = Instant::now();
        let mut group = Group::new("g");
        assert_eq!(
            group
                .join(args("made-up", "range"), now)
                .0
                .unwrap()
                .error_code,
            ResponseError::UnknownMemberId.code()
        );
        let (_, completed) = join_new(&mut group, now);
        let first = completed.joins[0].0.clone();
        group.sync(&first, 1, vec![], now);
        assert_eq!(group.leave(&first, None, now).0, 0);
        assert_eq!(group.state, GroupState::Empty);
        assert!(
            group.check_commit("", -1).is_ok(),
            "an empty group takes commits from outside a generation"
        );
        let mixed = JoinArgs {
            protocols: vec![("roundrobin".into(), Bytes::new())],
            ..args("", "x")
        };
        join_new(&mut group, now);
        assert_eq!(
            group.join(mixed, now).0.unwrap().error_code,
            ResponseError::InconsistentGroupProtocol.code()
        );
    }

    #[test]
    fn a_follower_rejoining_unchanged_keeps_the_generation() {
        let now = Instant::now();
        let (mut group, leader) = stable_group_of_one(now);
        let (answer, _, _) = group.join(args("", "range"), now);
        let (_, follower, _) = group.join(args(&answer.unwrap().member_id, "range"), now);
        group.join(args(&leader, "range"), now);
        group.sync(&leader, 2, vec![], now);
        assert_eq!(group.state, GroupState::Stable);
        let (answer, _, _) = group.join(args(&follower, "range"), now);
        let answer = answer.expect("answered at once");
        assert_eq!((answer.error_code, answer.generation), (0, 2));
        assert_eq!(group.state, GroupState::Stable);
        // The leader rejoining, or changed metadata, does rebalance.
        let (answer, _, _) = group.join(args(&leader, "range"), now);
        assert!(answer.is_none());
        assert_eq!(group.state, GroupState::PreparingRebalance);
    }

    #[test]
    fn a_static_member_rejoining_keeps_its_assignment_without_a_rebalance() {
        let now = Instant::now();
        let mut group = Group::new("g");
        let static_args = |member_id: &str| JoinArgs {
            instance_id: Some("pod-1".into()),
            ..args(member_id, "range")
        };
        let (answer, _, _) = group.join(static_args(""), now);
        let (_, _, completed) = group.join(static_args(&answer.unwrap().member_id), now);
        let first = completed.joins[0].0.clone();
        group.sync(
            &first,
            1,
            vec![(first.clone(), Bytes::from_static(b"mine"))],
            now,
        );
        // Restarted: it lost its member id but keeps its instance id.
        let (answer, _, _) = group.join(static_args(""), now);
        let answer = answer.expect("answered at once");
        assert_eq!(answer.error_code, 0);
        assert_eq!(answer.generation, 1, "no rebalance");
        assert_ne!(answer.member_id, first);
        assert_eq!(
            group
                .sync(&answer.member_id, 1, vec![], now)
                .0
                .unwrap()
                .assignment,
            Bytes::from_static(b"mine")
        );
    }
}
