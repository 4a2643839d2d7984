//! A transaction whose caller gives up (a stream task aborted when its run stops, a timeout)
//! must not leave its connection inside a transaction: the next user of that pooled connection
//! would run its "autocommitted" statements (a heartbeat, a claim, a run's end) in a transaction
//! nobody commits, and lose them when it is rolled back.
//!
//! sqlx's `Pool::begin` has that hole: cancelled after its `BEGIN` reached the server but before
//! the answer, it forgets the transaction. Seen under database restarts: a worker's heartbeats
//! "succeeded" without being committed, its lease expired, and its streams were charged a retry.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The server's answers arrive this late (a slow network): a caller that gives up within it
/// does so while its `BEGIN` is at the server and the answer on its way.
const ANSWER_DELAY: Duration = Duration::from_millis(20);

/// A TCP proxy to `upstream` that delays every chunk the server sends by [`ANSWER_DELAY`].
async fn slow_answers(upstream: (String, u16)) -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect((upstream.0.as_str(), upstream.1))
                .await
                .unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = server_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tokio::time::sleep(ANSWER_DELAY).await;
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Gives up on `begin` after `after` (from at once to past the answer), then
/// writes one row without a transaction through the same (only) connection, and counts the rows
/// another connection sees: every write must be committed.
async fn give_up_on_begins<F, Fut>(pool: PgPool, begin: F) -> usize
where
    F: Fn(PgPool) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    sqlx::query("CREATE TABLE written (n bigint)")
        .execute(&pool)
        .await
        .unwrap();
    let options = pool.connect_options();
    let port = slow_answers((options.get_host().to_owned(), options.get_port())).await;
    let one = PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(
            (*options)
                .clone()
                .port(port)
                .ssl_mode(sqlx::postgres::PgSslMode::Disable),
        )
        .await
        .unwrap();
    let rounds: u32 = 30;
    for n in 0..rounds {
        // from at once to past the answer, by 2 ms
        let after = Duration::from_millis(u64::from(n) * 2);
        let _ = tokio::time::timeout(after, begin(one.clone())).await;
        sqlx::query("INSERT INTO written VALUES ($1)")
            .bind(i64::from(n))
            .execute(&one)
            .await
            .unwrap();
    }
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM written")
        .fetch_one(&pool)
        .await
        .unwrap();
    usize::try_from(rounds).unwrap() - usize::try_from(seen).unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_begin_given_up_leaves_no_transaction_behind(pool: PgPool) {
    let lost = give_up_on_begins(pool, |one| async move {
        let _tx = tributary::db::begin(&one).await.unwrap();
    })
    .await;
    assert_eq!(lost, 0, "{lost} autocommitted writes were never committed");
}
