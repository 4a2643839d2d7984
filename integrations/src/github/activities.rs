//! What a page of a repository's list becomes: activities with stable source ids, their members
//! keyed by GitHub's user ids, each comment linked to its issue or pull request.

use chrono::{DateTime, Utc};
use serde_json::json;
use tributary::{Activity, IntegrationError, Member, StreamOutcome};

use super::api::{Issue, IssueComment, Repository, ReviewComment, Stargazer, User};
use super::lists::{Items, RepoRef};

/// The activities of a page. Stars and forks are read by window in a check (the API cannot
/// filter them), so those before `since` are left out; the other lists are filtered by GitHub.
pub fn of_page(
    repo: &RepoRef,
    items: &Items,
    since: Option<DateTime<Utc>>,
) -> Result<StreamOutcome, IntegrationError> {
    let in_window = |at: DateTime<Utc>| since.is_none_or(|since| at >= since);
    let activities: Vec<Activity> = match items {
        Items::Stars(stars) => stars
            .iter()
            .filter(|s| in_window(s.starred_at))
            .map(|s| star(repo, s))
            .collect(),
        Items::Forks(forks) => forks
            .iter()
            .filter(|f| f.created_at.is_some_and(in_window))
            .filter_map(|f| fork(repo, f))
            .collect(),
        Items::Issues(issues) => issues.iter().filter_map(|i| issue(repo, i)).collect(),
        Items::Comments(comments) => comments
            .iter()
            .filter_map(|c| comment(repo, c).transpose())
            .collect::<Result<_, _>>()?,
        Items::ReviewComments(comments) => comments
            .iter()
            .filter_map(|c| review_comment(repo, c).transpose())
            .collect::<Result<_, _>>()?,
    };
    Ok(StreamOutcome::new()
        .activities(activities)
        .newest_activity_as_last_record())
}

/// The source id of an issue or a pull request (GitHub numbers both in one sequence).
fn issue_id(repo: &RepoRef, number: u64) -> String {
    format!("issue:{}:{number}", repo.id)
}

pub fn member(user: &User) -> Member {
    Member::new(user.id.to_string(), user.login.clone())
        .attributes(json!({
            "avatar_url": user.avatar_url,
            "type": user.kind,
        }))
        .url(&user.html_url)
}

fn star(repo: &RepoRef, star: &Stargazer) -> Activity {
    Activity::new(
        format!("star:{}:{}", repo.id, star.user.id),
        "star",
        star.starred_at,
        member(&star.user),
    )
    .channel(repo.full_name.clone())
}

fn fork(repo: &RepoRef, fork: &Repository) -> Option<Activity> {
    let activity = Activity::new(
        format!("fork:{}", fork.id),
        "fork",
        fork.created_at?,
        member(&fork.owner),
    )
    .channel(repo.full_name.clone())
    .attributes(json!({ "fork": fork.full_name }))
    .url(&fork.html_url);
    Some(activity)
}

/// An issue or a pull request opened; `None` when its author's account is gone.
fn issue(repo: &RepoRef, issue: &Issue) -> Option<Activity> {
    let user = issue.user.as_ref()?;
    let kind = if issue.pull_request.is_some() {
        "pull_request-opened"
    } else {
        "issue-opened"
    };
    let activity = Activity::new(
        issue_id(repo, issue.number),
        kind,
        issue.created_at,
        member(user),
    )
    .channel(repo.full_name.clone())
    .title(issue.title.clone())
    .url(issue.html_url.clone())
    .attributes(json!({
        "number": issue.number,
        "state": issue.state,
        "comments": issue.comments,
        "labels": issue.labels.iter().map(|l| l.name()).collect::<Vec<_>>(),
        "closed_at": issue.closed_at,
        "merged_at": issue.pull_request.as_ref().and_then(|p| p.merged_at),
    }))
    .body(issue.body.as_ref().filter(|b| !b.is_empty()));
    Some(activity)
}

fn comment(repo: &RepoRef, comment: &IssueComment) -> Result<Option<Activity>, IntegrationError> {
    let number = trailing_number(&comment.issue_url, "issue_url", comment.id)?;
    let Some(user) = &comment.user else {
        return Ok(None);
    };
    // GitHub's page for a pull request's comment is under `/pull/`
    let kind = if comment.html_url.contains("/pull/") {
        "pull_request-comment"
    } else {
        "issue-comment"
    };
    let activity = Activity::new(
        format!("issue_comment:{}", comment.id),
        kind,
        comment.created_at,
        member(user),
    )
    .parent(issue_id(repo, number))
    .channel(repo.full_name.clone())
    .url(comment.html_url.clone())
    .attributes(json!({ "number": number, "updated_at": comment.updated_at }))
    .body(&comment.body);
    Ok(Some(activity))
}

fn review_comment(
    repo: &RepoRef,
    comment: &ReviewComment,
) -> Result<Option<Activity>, IntegrationError> {
    let number = trailing_number(&comment.pull_request_url, "pull_request_url", comment.id)?;
    let Some(user) = &comment.user else {
        return Ok(None);
    };
    let activity = Activity::new(
        format!("review_comment:{}", comment.id),
        "pull_request-review-comment",
        comment.created_at,
        member(user),
    )
    .parent(issue_id(repo, number))
    .channel(repo.full_name.clone())
    .url(comment.html_url.clone())
    .attributes(json!({
        "number": number,
        "path": comment.path,
        "review_id": comment.pull_request_review_id,
        "in_reply_to": comment.in_reply_to_id.map(|id| format!("review_comment:{id}")),
        "updated_at": comment.updated_at,
    }))
    .body(&comment.body);
    Ok(Some(activity))
}

/// The issue or pull request number at the end of an API URL (`…/issues/7`, `…/pulls/7`).
fn trailing_number(url: &str, field: &str, id: u64) -> Result<u64, IntegrationError> {
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            IntegrationError::fatal(format!(
                "comment {id}: `{field}` does not end in an issue number: `{url}`"
            ))
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn comments_name_their_issue_or_pull_request() {
        assert_eq!(
            trailing_number(
                "https://api.github.com/repos/a/b/issues/1347",
                "issue_url",
                1
            )
            .unwrap(),
            1347
        );
        assert_eq!(
            trailing_number("https://ghe.example.com/api/v3/repos/a/b/pulls/7/", "x", 1).unwrap(),
            7
        );
        assert_eq!(
            trailing_number("https://api.github.com/repos/a/b/issues/", "issue_url", 9)
                .unwrap_err()
                .to_string(),
            "comment 9: `issue_url` does not end in an issue number: \
             `https://api.github.com/repos/a/b/issues/`"
        );
    }
}
