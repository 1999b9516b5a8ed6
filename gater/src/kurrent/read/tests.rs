use super::*;
use crate::kurrent::proto::event_store::client::streams::read_req::{options, Options};
use crate::kurrent::proto::event_store::client::{Empty, StreamIdentifier};

fn request(stream: options::StreamOption, count: CountOption, backwards: bool) -> ReadReq {
    ReadReq {
        options: Some(Options {
            read_direction: if backwards {
                opts::ReadDirection::Backwards as i32
            } else {
                opts::ReadDirection::Forwards as i32
            },
            resolve_links: false,
            uuid_option: None,
            control_option: None,
            stream_option: Some(stream),
            count_option: Some(count),
            filter_option: Some(FilterOption::NoFilter(Empty {})),
        }),
    }
}

fn stream(name: &str, revision: Option<u64>) -> options::StreamOption {
    StreamOption::Stream(options::StreamOptions {
        stream_identifier: Some(StreamIdentifier {
            stream_name: name.as_bytes().to_vec(),
        }),
        revision_option: Some(match revision {
            Some(r) => stream_options::RevisionOption::Revision(r),
            None => stream_options::RevisionOption::Start(Empty {}),
        }),
    })
}

#[test]
fn a_read_request_becomes_a_plan() {
    let plan = ReadPlan::from_request(request(stream("s", Some(3)), CountOption::Count(10), true))
        .unwrap();
    assert_eq!(
        plan.source,
        Source::Stream {
            name: "s".into(),
            start: StreamStart::Revision(3)
        }
    );
    assert_eq!(plan.direction, Direction::Backward);
    assert_eq!(plan.count, Some(10));
    let sub = ReadPlan::from_request(request(
        StreamOption::All(options::AllOptions {
            all_option: Some(all_options::AllOption::Position(options::Position {
                commit_position: 7,
                prepare_position: 7,
            })),
        }),
        CountOption::Subscription(options::SubscriptionOptions {}),
        false,
    ))
    .unwrap();
    assert_eq!(
        sub.source,
        Source::All {
            start: AllStart::Commit(7)
        }
    );
    assert_eq!(sub.count, None);
}

#[test]
fn bad_reads_are_refused_naming_the_field() {
    let e = ReadPlan::from_request(ReadReq { options: None }).unwrap_err();
    assert!(e.to_string().contains("options"), "{e}");
    let e = ReadPlan::from_request(request(
        stream("s", None),
        CountOption::Subscription(options::SubscriptionOptions {}),
        true,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("read_direction"), "{e}");
    let e = ReadPlan::from_request(request(stream("", None), CountOption::Count(1), false))
        .unwrap_err();
    assert!(e.to_string().contains("stream_identifier"), "{e}");
}

#[test]
fn all_reads_start_where_kurrentdb_starts_them() {
    use Direction::{Backward, Forward};
    assert_eq!(all_read_from(AllStart::Start, Forward), Some(0));
    assert_eq!(all_read_from(AllStart::End, Forward), None);
    assert_eq!(all_read_from(AllStart::End, Backward), Some(u64::MAX));
    // Commit 5 is the event at position 4, included either way.
    assert_eq!(all_read_from(AllStart::Commit(5), Forward), Some(4));
    assert_eq!(all_read_from(AllStart::Commit(5), Backward), Some(4));
    // Commit 0 is before every event.
    assert_eq!(all_read_from(AllStart::Commit(0), Forward), Some(0));
    assert_eq!(all_read_from(AllStart::Commit(0), Backward), None);
}
