//! Consumer groups: FindCoordinator (10), JoinGroup (11), SyncGroup (14),
//! Heartbeat (12), LeaveGroup (13), OffsetCommit (8), OffsetFetch (9),
//! DescribeGroups (15), ListGroups (16), DeleteGroups (42). This broker is
//! the coordinator of every group.

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::find_coordinator_response::FindCoordinatorResponse;
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use kafka_protocol::messages::join_group_request::JoinGroupRequest;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::messages::{BrokerId, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{Reply, Request};
use crate::groups::offsets::Committed;
use crate::groups::state::JoinArgs;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

pub(crate) fn find_coordinator(
    request: &Request,
    body: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let settings = &request.broker.settings;
    let mut response = FindCoordinatorResponse::default();
    if request.version >= 1 && body.key_type != 0 {
        // Transaction coordinators (key type 1) are not offered.
        response.error_code = ResponseError::CoordinatorNotAvailable.code();
        response.node_id = BrokerId(-1);
        response.port = -1;
        return response;
    }
    response.node_id = BrokerId(settings.node_id);
    response.host = text(&settings.advertised_host);
    response.port = i32::from(settings.advertised_port);
    response
}

pub(crate) fn join_group(request: Request, body: JoinGroupRequest) -> Reply {
    Box::pin(async move {
        let version = request.version;
        let rebalance_ms = if version >= 1 {
            body.rebalance_timeout_ms
        } else {
            body.session_timeout_ms
        };
        let args = JoinArgs {
            member_id: body.member_id.to_string(),
            instance_id: body.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            protocol_type: body.protocol_type.to_string(),
            protocols: body
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            session_timeout: Duration::from_millis(
                u64::try_from(body.session_timeout_ms).unwrap_or(0),
            ),
            rebalance_timeout: Duration::from_millis(u64::try_from(rebalance_ms).unwrap_or(0)),
            requires_known_member_id: version >= 4,
        };
        let outcome = request
            .broker
            .coordinator
            .join(body.group_id.as_str(), args)
            .await;
        let mut response = JoinGroupResponse::default();
        response.error_code = outcome.error_code;
        response.generation_id = outcome.generation;
        response.protocol_name = Some(text(outcome.protocol.as_deref().unwrap_or("")));
        response.leader = text(&outcome.leader);
        response.member_id = text(&outcome.member_id);
        response.members = outcome
            .members
            .into_iter()
            .map(|(member_id, instance_id, metadata)| {
                let mut member = JoinGroupResponseMember::default();
                member.member_id = text(&member_id);
                if version >= 5 {
                    member.group_instance_id = instance_id.map(|i| text(&i));
                }
                member.metadata = metadata;
                member
            })
            .collect();
        Some(request.respond(&response))
    })
}

pub(crate) fn sync_group(request: Request, body: SyncGroupRequest) -> Reply {
    Box::pin(async move {
        let assignments = body
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect();
        let outcome = request
            .broker
            .coordinator
            .sync(
                body.group_id.as_str(),
                body.member_id.as_str(),
                body.generation_id,
                assignments,
            )
            .await;
        let mut response = SyncGroupResponse::default();
        response.error_code = outcome.error_code;
        response.assignment = outcome.assignment;
        Some(request.respond(&response))
    })
}

pub(crate) fn heartbeat(request: &Request, body: HeartbeatRequest) -> HeartbeatResponse {
    let mut response = HeartbeatResponse::default();
    response.error_code = request.broker.coordinator.heartbeat(
        body.group_id.as_str(),
        body.member_id.as_str(),
        body.generation_id,
    );
    response
}

pub(crate) fn leave_group(request: &Request, body: LeaveGroupRequest) -> LeaveGroupResponse {
    let coordinator = &request.broker.coordinator;
    let group = body.group_id.as_str();
    let mut response = LeaveGroupResponse::default();
    if request.version < 3 {
        response.error_code = coordinator.leave(group, body.member_id.as_str(), None);
        return response;
    }
    for identity in body.members {
        let mut member = MemberResponse::default();
        member.error_code = coordinator.leave(
            group,
            identity.member_id.as_str(),
            identity.group_instance_id.as_ref().map(|s| s.as_str()),
        );
        member.member_id = identity.member_id;
        member.group_instance_id = identity.group_instance_id;
        response.members.push(member);
    }
    response
}

pub(crate) fn offset_commit(request: Request, body: OffsetCommitRequest) -> Reply {
    let group = body.group_id.to_string();
    let allowed = request.broker.coordinator.check_commit(
        &group,
        body.member_id.as_str(),
        body.generation_id_or_member_epoch,
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut response = OffsetCommitResponse::default();
    let mut commits = Vec::new();
    for topic in body.topics {
        let mut topic_response = OffsetCommitResponseTopic::default();
        let known = request.broker.log.topic(topic.name.as_str());
        for partition in topic.partitions {
            let mut answer = OffsetCommitResponsePartition::default();
            answer.partition_index = partition.partition_index;
            let partition_known = known.as_ref().is_ok_and(|t| {
                (0..t.config().partitions as i32).contains(&partition.partition_index)
            });
            answer.error_code = match &allowed {
                Err(error) => error.code(),
                Ok(()) if !partition_known => ResponseError::UnknownTopicOrPartition.code(),
                Ok(()) => {
                    commits.push((
                        topic.name.to_string(),
                        partition.partition_index,
                        Committed {
                            offset: partition.committed_offset,
                            leader_epoch: partition.committed_leader_epoch,
                            metadata: partition.committed_metadata.map(|m| m.to_string()),
                            commit_time_ms: now_ms,
                        },
                    ));
                    0
                }
            };
            topic_response.partitions.push(answer);
        }
        topic_response.name = topic.name;
        response.topics.push(topic_response);
    }
    Box::pin(async move {
        if let Err(error) = request
            .broker
            .coordinator
            .offsets
            .commit(&group, commits)
            .await
        {
            tracing::warn!(group, %error, "storing committed offsets failed");
            let code = crate::errors::code(&error);
            for topic in &mut response.topics {
                for partition in &mut topic.partitions {
                    if partition.error_code == 0 {
                        partition.error_code = code;
                    }
                }
            }
        }
        Some(request.respond(&response))
    })
}

pub(crate) fn offset_fetch(request: &Request, body: OffsetFetchRequest) -> OffsetFetchResponse {
    let offsets = &request.broker.coordinator.offsets;
    let group = body.group_id.as_str();
    let mut response = OffsetFetchResponse::default();
    let wanted: Vec<(TopicName, Vec<i32>)> = match body.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect(),
        None => {
            let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> =
                std::collections::BTreeMap::new();
            for ((topic, partition), _) in offsets.group(group) {
                by_topic.entry(topic).or_default().push(partition);
            }
            by_topic
                .into_iter()
                .map(|(topic, partitions)| (TopicName(text(&topic)), partitions))
                .collect()
        }
    };
    for (name, partitions) in wanted {
        let mut topic = OffsetFetchResponseTopic::default();
        for partition_index in partitions {
            let mut answer = OffsetFetchResponsePartition::default();
            answer.partition_index = partition_index;
            match offsets.fetch(group, name.as_str(), partition_index) {
                Some(committed) => {
                    answer.committed_offset = committed.offset;
                    answer.metadata = Some(text(committed.metadata.as_deref().unwrap_or("")));
                    if request.version >= 5 {
                        answer.committed_leader_epoch = committed.leader_epoch;
                    }
                }
                None => {
                    answer.committed_offset = -1;
                    answer.metadata = Some(text(""));
                }
            }
            topic.partitions.push(answer);
        }
        topic.name = name;
        response.topics.push(topic);
    }
    response
}

pub(crate) fn describe_groups(
    request: &Request,
    body: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut response = DescribeGroupsResponse::default();
    for group_id in body.groups {
        let mut described = DescribedGroup::default();
        match request.broker.coordinator.describe(group_id.as_str()) {
            Some(view) => {
                described.group_state = text(view.state);
                described.protocol_type = text(&view.protocol_type);
                described.protocol_data = text(&view.protocol);
                for (member_id, instance_id, client_id, client_host, metadata, assignment) in
                    view.members
                {
                    let mut member = DescribedGroupMember::default();
                    member.member_id = text(&member_id);
                    if request.version >= 4 {
                        member.group_instance_id = instance_id.map(|i| text(&i));
                    }
                    member.client_id = text(&client_id);
                    member.client_host = text(&client_host);
                    member.member_metadata = metadata;
                    member.member_assignment = assignment;
                    described.members.push(member);
                }
            }
            None => described.group_state = text("Dead"),
        }
        described.group_id = group_id;
        response.groups.push(described);
    }
    response
}

pub(crate) fn list_groups(request: &Request, _body: ListGroupsRequest) -> ListGroupsResponse {
    let mut response = ListGroupsResponse::default();
    for view in request.broker.coordinator.list() {
        let mut listed = ListedGroup::default();
        listed.group_id = GroupId(text(&view.id));
        listed.protocol_type = text(&view.protocol_type);
        response.groups.push(listed);
    }
    response
}

pub(crate) fn delete_groups(request: Request, body: DeleteGroupsRequest) -> Reply {
    Box::pin(async move {
        let mut response = DeleteGroupsResponse::default();
        for group_id in body.groups_names {
            let mut result = DeletableGroupResult::default();
            result.error_code = request.broker.coordinator.delete(group_id.as_str()).await;
            result.group_id = group_id;
            response.results.push(result);
        }
        Some(request.respond(&response))
    })
}
