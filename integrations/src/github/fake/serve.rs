//! The fake GitHub's answers: GitHub's JSON shapes, its pagination and `Link` headers, its
//! filters and sort orders, and its primary rate limit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tributary::testkit::{Budget, Reply, Request};

use super::data::{CommentData, ForkData, GithubData, IssueData, RepoData, ReviewData};
use crate::github::api::User;

/// What the fake serves; shared by every request.
pub struct Api {
    data: Arc<Mutex<GithubData>>,
    /// `http://127.0.0.1:PORT/api/v3`, for URLs in bodies and links.
    base: String,
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn not_found() -> Reply {
    Reply::json(json!({
        "message": "Not Found",
        "documentation_url": "https://docs.github.com/rest",
        "status": "404"
    }))
    .with_status(404)
}

/// GitHub's primary rate limit: `limit` requests per window per token, reported in
/// `x-ratelimit-*` on every answer, 403 once spent.
pub fn primary_budget(limit: u32, window: Duration) -> Budget {
    Budget {
        headers: |state| {
            let mut headers = state.headers();
            headers.push(("x-ratelimit-resource".into(), "core".to_owned()));
            headers
        },
        refusal: |_| {
            Reply::json(json!({
                "message": "API rate limit exceeded for user ID 5000. If you reach out to GitHub \
                            Support for help, please include the request ID.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                "status": "403"
            }))
            .with_status(403)
        },
        ..Budget::per_window(limit, window).per_caller("authorization")
    }
}

impl Api {
    pub fn new(data: Arc<Mutex<GithubData>>, base: String) -> Self {
        Self { data, base }
    }

    pub fn answer(&self, request: &Request) -> Reply {
        self.route(request)
    }

    fn route(&self, request: &Request) -> Reply {
        let path = request.path.trim_start_matches("/api/v3");
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        let (owner, name, rest) = match segments.as_slice() {
            ["repos", owner, name, rest @ ..] => (*owner, *name, rest),
            _ => return not_found(),
        };
        let Some(repo) = data.repos.iter().find(|r| {
            r.owner.login.eq_ignore_ascii_case(owner) && r.name.eq_ignore_ascii_case(name)
        }) else {
            return not_found();
        };
        let since = match request.query("since").map(DateTime::parse_from_rfc3339) {
            None => None,
            Some(Ok(at)) => Some(at.with_timezone(&Utc)),
            Some(Err(_)) => {
                return Reply::json(json!({"message": "Validation Failed", "status": "422"}))
                    .with_status(422);
            }
        };
        let updated = |at: DateTime<Utc>| since.is_none_or(|since| at >= since);
        let ascending = request.query("direction") == Some("asc");
        let page = |items: Vec<Value>| self.page(items, request);
        match rest {
            [] => Reply::json(self.repo_json(repo)),
            ["stargazers"] => {
                let rich = request
                    .header("accept")
                    .is_some_and(|a| a.contains("application/vnd.github.star+json"));
                page(
                    repo.stars
                        .iter()
                        .map(|(u, at)| {
                            if rich {
                                json!({"starred_at": time(*at), "user": self.user_json(u)})
                            } else {
                                self.user_json(u)
                            }
                        })
                        .collect(),
                )
            }
            ["forks"] => {
                let mut forks: Vec<&ForkData> = repo.forks.iter().collect();
                forks.sort_by_key(|f| (f.created_at, f.id));
                if request.query("sort").unwrap_or("newest") == "newest" {
                    forks.reverse();
                }
                page(forks.iter().map(|f| self.fork_json(repo, f)).collect())
            }
            ["issues"] => {
                let state = request.query("state").unwrap_or("open");
                let mut issues: Vec<&IssueData> = repo
                    .issues
                    .iter()
                    .filter(|i| match state {
                        "all" => true,
                        "closed" => i.closed,
                        _ => !i.closed,
                    })
                    .filter(|i| updated(i.updated_at))
                    .collect();
                match request.query("sort") {
                    Some("updated") => issues.sort_by_key(|i| (i.updated_at, i.id)),
                    _ => issues.sort_by_key(|i| (i.created_at, i.id)),
                }
                // GitHub's default direction for issues is `desc`
                if request.query("direction") != Some("asc") {
                    issues.reverse();
                }
                page(issues.iter().map(|i| self.issue_json(repo, i)).collect())
            }
            ["issues", "comments"] => {
                let mut comments: Vec<&CommentData> = repo
                    .comments
                    .iter()
                    .filter(|c| updated(c.updated_at))
                    .collect();
                match request.query("sort") {
                    Some("updated") => comments.sort_by_key(|c| (c.updated_at, c.id)),
                    _ => comments.sort_by_key(|c| (c.created_at, c.id)),
                }
                if request.query("direction") == Some("desc") {
                    comments.reverse();
                }
                page(
                    comments
                        .iter()
                        .map(|c| self.comment_json(repo, c))
                        .collect(),
                )
            }
            ["pulls", "comments"] => {
                let mut comments: Vec<&ReviewData> = repo
                    .review_comments
                    .iter()
                    .filter(|c| updated(c.updated_at))
                    .collect();
                comments.sort_by_key(|c| (c.created_at, c.id));
                if request.query("sort").is_some() && !ascending {
                    comments.reverse();
                }
                page(comments.iter().map(|c| self.review_json(repo, c)).collect())
            }
            _ => not_found(),
        }
    }

    /// One page of `items` by `per_page` (30 by default, at most 100) and `page`, with GitHub's
    /// `Link` header.
    fn page(&self, items: Vec<Value>, request: &Request) -> Reply {
        let per_page = request
            .query("per_page")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(30)
            .clamp(1, 100);
        let page = request
            .query("page")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        let last = items.len().div_ceil(per_page).max(1);
        let body: Vec<Value> = items
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        let mut links = Vec::new();
        if page < last {
            links.push(format!("<{}>; rel=\"next\"", self.link(request, page + 1)));
            links.push(format!("<{}>; rel=\"last\"", self.link(request, last)));
        }
        if page > 1 {
            links.push(format!("<{}>; rel=\"prev\"", self.link(request, page - 1)));
            links.push(format!("<{}>; rel=\"first\"", self.link(request, 1)));
        }
        let reply = Reply::json(body);
        if links.is_empty() {
            reply
        } else {
            reply.header("Link", links.join(", "))
        }
    }

    /// The request's URL with `page` set.
    fn link(&self, request: &Request, page: usize) -> String {
        let mut query: Vec<(String, String)> = request
            .query
            .iter()
            .filter(|(k, _)| k != "page")
            .cloned()
            .collect();
        query.push(("page".to_owned(), page.to_string()));
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        format!(
            "{}{}?{}",
            self.base,
            request.path.trim_start_matches("/api/v3"),
            query.join("&")
        )
    }

    fn user_json(&self, user: &User) -> Value {
        json!({
            "login": user.login,
            "id": user.id,
            "node_id": format!("U_{}", user.id),
            "avatar_url": user.avatar_url,
            "gravatar_id": "",
            "url": format!("{}/users/{}", self.base, user.login),
            "html_url": user.html_url,
            "type": user.kind,
            "site_admin": false,
        })
    }

    fn repo_json(&self, repo: &RepoData) -> Value {
        let full = repo.full_name();
        json!({
            "id": repo.id,
            "node_id": format!("R_{}", repo.id),
            "name": repo.name,
            "full_name": full,
            "private": false,
            "owner": self.user_json(&repo.owner),
            "html_url": format!("https://github.test/{full}"),
            "description": "a repository of the fake GitHub",
            "fork": false,
            "url": format!("{}/repos/{full}", self.base),
            "created_at": "2023-06-01T00:00:00Z",
            "stargazers_count": repo.stars.len(),
            "watchers_count": repo.stars.len(),
            "forks_count": repo.forks.len(),
            "open_issues_count": repo.issues.iter().filter(|i| !i.closed).count(),
            "default_branch": "main",
        })
    }

    fn fork_json(&self, repo: &RepoData, fork: &ForkData) -> Value {
        let full = format!("{}/{}", fork.owner.login, repo.name);
        json!({
            "id": fork.id,
            "node_id": format!("R_{}", fork.id),
            "name": repo.name,
            "full_name": full,
            "owner": self.user_json(&fork.owner),
            "html_url": format!("https://github.test/{full}"),
            "fork": true,
            "url": format!("{}/repos/{full}", self.base),
            "created_at": time(fork.created_at),
            "updated_at": time(fork.created_at),
            "stargazers_count": 0,
            "forks_count": 0,
        })
    }

    fn issue_json(&self, repo: &RepoData, issue: &IssueData) -> Value {
        let full = repo.full_name();
        let kind = if issue.pull { "pull" } else { "issues" };
        let mut value = json!({
            "url": format!("{}/repos/{full}/issues/{}", self.base, issue.number),
            "repository_url": format!("{}/repos/{full}", self.base),
            "html_url": format!("https://github.test/{full}/{kind}/{}", issue.number),
            "id": issue.id,
            "node_id": format!("I_{}", issue.id),
            "number": issue.number,
            "title": issue.title,
            "user": issue.user.as_ref().map(|u| self.user_json(u)),
            "labels": [{"id": 1, "name": if issue.pull { "enhancement" } else { "bug" }, "color": "f29513"}],
            "state": if issue.closed { "closed" } else { "open" },
            "locked": false,
            "comments": repo.comments.iter().filter(|c| c.number == issue.number).count(),
            "created_at": time(issue.created_at),
            "updated_at": time(issue.updated_at),
            "closed_at": issue.closed.then(|| time(issue.updated_at)),
            "author_association": "CONTRIBUTOR",
            "body": format!("{} body", issue.title),
        });
        if issue.pull {
            value["pull_request"] = json!({
                "url": format!("{}/repos/{full}/pulls/{}", self.base, issue.number),
                "html_url": format!("https://github.test/{full}/pull/{}", issue.number),
                "merged_at": issue.closed.then(|| time(issue.updated_at)),
            });
        }
        value
    }

    fn comment_json(&self, repo: &RepoData, comment: &CommentData) -> Value {
        let full = repo.full_name();
        let pull = repo
            .issues
            .iter()
            .any(|i| i.number == comment.number && i.pull);
        let kind = if pull { "pull" } else { "issues" };
        json!({
            "id": comment.id,
            "node_id": format!("IC_{}", comment.id),
            "url": format!("{}/repos/{full}/issues/comments/{}", self.base, comment.id),
            "html_url": format!("https://github.test/{full}/{kind}/{}#issuecomment-{}", comment.number, comment.id),
            "body": comment.body,
            "user": comment.user.as_ref().map(|u| self.user_json(u)),
            "created_at": time(comment.created_at),
            "updated_at": time(comment.updated_at),
            "issue_url": format!("{}/repos/{full}/issues/{}", self.base, comment.number),
            "author_association": "CONTRIBUTOR",
        })
    }

    fn review_json(&self, repo: &RepoData, comment: &ReviewData) -> Value {
        let full = repo.full_name();
        let mut value = json!({
            "url": format!("{}/repos/{full}/pulls/comments/{}", self.base, comment.id),
            "pull_request_review_id": comment.id + 1_000_000,
            "id": comment.id,
            "node_id": format!("PRRC_{}", comment.id),
            "diff_hunk": "@@ -1,3 +1,4 @@",
            "path": "src/lib.rs",
            "position": 1,
            "commit_id": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
            "user": comment.user.as_ref().map(|u| self.user_json(u)),
            "body": format!("review comment {}", comment.id),
            "created_at": time(comment.created_at),
            "updated_at": time(comment.updated_at),
            "html_url": format!("https://github.test/{full}/pull/{}#discussion_r{}", comment.number, comment.id),
            "pull_request_url": format!("{}/repos/{full}/pulls/{}", self.base, comment.number),
            "author_association": "CONTRIBUTOR",
        });
        if let Some(parent) = comment.in_reply_to {
            value["in_reply_to_id"] = json!(parent);
        }
        value
    }
}

/// Percent-encodes a query component (everything but RFC 3986's unreserved characters).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
