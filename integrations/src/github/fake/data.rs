//! What a fake GitHub holds: repositories with their stargazers, forks, issues, pull requests,
//! comments and review comments; generated deterministically, editable between runs.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::github::api::User;

/// A repository and everything in it, in the order things happened.
#[derive(Debug, Clone)]
pub struct RepoData {
    pub id: u64,
    pub owner: User,
    pub name: String,
    /// Stargazers in the order they starred.
    pub stars: Vec<(User, DateTime<Utc>)>,
    pub forks: Vec<ForkData>,
    pub issues: Vec<IssueData>,
    pub comments: Vec<CommentData>,
    pub review_comments: Vec<ReviewData>,
}

impl RepoData {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner.login, self.name)
    }
}

#[derive(Debug, Clone)]
pub struct ForkData {
    pub id: u64,
    pub owner: User,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct IssueData {
    pub id: u64,
    pub number: u64,
    /// `None`: the author's account is gone.
    pub user: Option<User>,
    pub title: String,
    pub pull: bool,
    pub closed: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct CommentData {
    pub id: u64,
    pub number: u64,
    pub user: Option<User>,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct ReviewData {
    pub id: u64,
    pub number: u64,
    pub user: Option<User>,
    pub in_reply_to: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The shape of a generated GitHub: every repository gets the same counts.
#[derive(Debug, Clone, Copy)]
pub struct GithubSpec {
    pub repositories: usize,
    /// Users who star, fork, open and comment (in turn).
    pub users: usize,
    pub stars: usize,
    pub forks: usize,
    pub issues: usize,
    /// Every `pull_every`-th issue is a pull request (0: none).
    pub pull_every: usize,
    /// Comments, spread over the issues and pull requests.
    pub comments: usize,
    /// Review comments, spread over the pull requests (each third one a reply).
    pub review_comments: usize,
}

/// Everything a fake GitHub serves.
#[derive(Debug, Clone, Default)]
pub struct GithubData {
    pub repos: Vec<RepoData>,
    next_id: u64,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// User `n` of a generated GitHub (id 5000 + n, login `dev{n}`).
pub fn user(n: usize) -> User {
    let login = format!("dev{n}");
    User {
        id: 5000 + n as u64,
        html_url: Some(format!("https://github.test/{login}")),
        avatar_url: Some(format!("https://avatars.github.test/u/{}", 5000 + n)),
        kind: Some(if n % 50 == 49 { "Bot" } else { "User" }.to_owned()),
        login,
    }
}

impl GithubData {
    /// A deterministic GitHub: the same spec always yields the same ids, authors and times.
    pub fn generate(spec: GithubSpec) -> Self {
        let mut data = Self {
            next_id: 1,
            ..Self::default()
        };
        let users = spec.users.max(1);
        for r in 0..spec.repositories {
            let repo = data.add_repository(&format!("org{r}"), &format!("project{r}"));
            let mut minute = 0;
            let mut at = || {
                minute += 1;
                start() + Duration::minutes(minute)
            };
            for s in 0..spec.stars {
                data.add_star(repo, s % users, at());
            }
            for f in 0..spec.forks {
                data.add_fork(repo, (f * 7 + 3) % users, at());
            }
            for i in 0..spec.issues {
                let pull = spec.pull_every > 0 && i % spec.pull_every == spec.pull_every - 1;
                let title = format!("{} {i}", if pull { "Change" } else { "Problem" });
                data.add_issue(repo, (i * 3 + 1) % users, &title, pull, at());
            }
            let numbers: Vec<u64> = data.repos[repo].issues.iter().map(|i| i.number).collect();
            let pulls: Vec<u64> = data.repos[repo]
                .issues
                .iter()
                .filter(|i| i.pull)
                .map(|i| i.number)
                .collect();
            for c in 0..spec.comments {
                if let Some(&number) = numbers.get(c % numbers.len().max(1)) {
                    data.add_comment(repo, number, (c * 5 + 2) % users, at());
                }
            }
            let mut previous = None;
            for c in 0..spec.review_comments {
                if let Some(&number) = pulls.get(c % pulls.len().max(1)) {
                    let reply = (c % 3 == 2).then_some(previous).flatten();
                    let id =
                        data.add_review_comment(repo, number, (c * 11 + 4) % users, reply, at());
                    previous = Some(id);
                }
            }
        }
        data
    }

    fn take_id(&mut self) -> u64 {
        self.next_id = self.next_id.max(1);
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Adds an empty repository `owner/name`; returns its index.
    pub fn add_repository(&mut self, owner: &str, name: &str) -> usize {
        let id = 700_000 + self.take_id();
        let mut owner_user = user(0);
        owner_user.login = owner.to_owned();
        owner_user.id = 900_000 + id;
        owner_user.kind = Some("Organization".to_owned());
        self.repos.push(RepoData {
            id,
            owner: owner_user,
            name: name.to_owned(),
            stars: Vec::new(),
            forks: Vec::new(),
            issues: Vec::new(),
            comments: Vec::new(),
            review_comments: Vec::new(),
        });
        self.repos.len() - 1
    }

    pub fn add_star(&mut self, repo: usize, user_n: usize, at: DateTime<Utc>) {
        let stars = &mut self.repos[repo].stars;
        let who = user(user_n);
        stars.retain(|(u, _)| u.id != who.id);
        stars.push((who, at));
    }

    /// Removes a user's star.
    pub fn unstar(&mut self, repo: usize, user_n: usize) {
        let id = user(user_n).id;
        self.repos[repo].stars.retain(|(u, _)| u.id != id);
    }

    pub fn add_fork(&mut self, repo: usize, user_n: usize, at: DateTime<Utc>) -> u64 {
        let id = 800_000 + self.take_id();
        self.repos[repo].forks.push(ForkData {
            id,
            owner: user(user_n),
            created_at: at,
        });
        id
    }

    /// Opens an issue (or a pull request); returns its number.
    pub fn add_issue(
        &mut self,
        repo: usize,
        user_n: usize,
        title: &str,
        pull: bool,
        at: DateTime<Utc>,
    ) -> u64 {
        let id = 100_000 + self.take_id();
        let issues = &mut self.repos[repo].issues;
        let number = issues.len() as u64 + 1;
        issues.push(IssueData {
            id,
            number,
            user: Some(user(user_n)),
            title: title.to_owned(),
            pull,
            closed: number.is_multiple_of(4),
            created_at: at,
            updated_at: at,
        });
        number
    }

    /// Comments on an issue or a pull request (bumping its `updated_at`); returns the id.
    pub fn add_comment(
        &mut self,
        repo: usize,
        number: u64,
        user_n: usize,
        at: DateTime<Utc>,
    ) -> u64 {
        let id = 200_000 + self.take_id();
        let repo = &mut self.repos[repo];
        repo.comments.push(CommentData {
            id,
            number,
            user: Some(user(user_n)),
            body: format!("comment {id}"),
            created_at: at,
            updated_at: at,
        });
        touch(repo, number, at);
        id
    }

    /// Edits a comment's body: it is updated, not created.
    pub fn edit_comment(&mut self, repo: usize, id: u64, body: &str, at: DateTime<Utc>) {
        if let Some(c) = self.repos[repo].comments.iter_mut().find(|c| c.id == id) {
            c.body = body.to_owned();
            c.updated_at = at;
        }
    }

    /// A review comment on a pull request's diff, as a reply to `in_reply_to` if given.
    pub fn add_review_comment(
        &mut self,
        repo: usize,
        number: u64,
        user_n: usize,
        in_reply_to: Option<u64>,
        at: DateTime<Utc>,
    ) -> u64 {
        let id = 300_000 + self.take_id();
        let repo = &mut self.repos[repo];
        repo.review_comments.push(ReviewData {
            id,
            number,
            user: Some(user(user_n)),
            in_reply_to,
            created_at: at,
            updated_at: at,
        });
        touch(repo, number, at);
        id
    }

    /// GitHub keeps the issues and comments of a deleted account with a `null` user.
    pub fn delete_issue_author(&mut self, repo: usize, number: u64) {
        if let Some(i) = self.repos[repo]
            .issues
            .iter_mut()
            .find(|i| i.number == number)
        {
            i.user = None;
        }
    }

    /// Source ids of what an onboarding of every repository produces.
    pub fn expected_activities(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for repo in &self.repos {
            let r = repo.id;
            ids.extend(repo.stars.iter().map(|(u, _)| format!("star:{r}:{}", u.id)));
            ids.extend(repo.forks.iter().map(|f| format!("fork:{}", f.id)));
            ids.extend(
                repo.issues
                    .iter()
                    .filter(|i| i.user.is_some())
                    .map(|i| format!("issue:{r}:{}", i.number)),
            );
            ids.extend(
                repo.comments
                    .iter()
                    .filter(|c| c.user.is_some())
                    .map(|c| format!("issue_comment:{}", c.id)),
            );
            ids.extend(
                repo.review_comments
                    .iter()
                    .filter(|c| c.user.is_some())
                    .map(|c| format!("review_comment:{}", c.id)),
            );
        }
        ids
    }

    /// GitHub user ids of the members an onboarding of every repository produces.
    pub fn expected_members(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for repo in &self.repos {
            ids.extend(repo.stars.iter().map(|(u, _)| u.id));
            ids.extend(repo.forks.iter().map(|f| f.owner.id));
            ids.extend(
                repo.issues
                    .iter()
                    .filter_map(|i| i.user.as_ref())
                    .map(|u| u.id),
            );
            ids.extend(
                repo.comments
                    .iter()
                    .filter_map(|c| c.user.as_ref())
                    .map(|u| u.id),
            );
            ids.extend(
                repo.review_comments
                    .iter()
                    .filter_map(|c| c.user.as_ref())
                    .map(|u| u.id),
            );
        }
        ids.into_iter().map(|id| id.to_string()).collect()
    }
}

fn touch(repo: &mut RepoData, number: u64, at: DateTime<Utc>) {
    if let Some(issue) = repo.issues.iter_mut().find(|i| i.number == number) {
        issue.updated_at = issue.updated_at.max(at);
    }
}
