//! `bench-fanout`: creates N integrations in a fresh database, processes one tick in which all
//! are due, and prints how long the fan-out to check runs and `postgres`-queue messages took.

use anyhow::Context;
use clap::Parser;
use tributary_tick_generator::bench::{self, FanOutBench};

#[derive(Debug, Parser)]
#[command(name = "bench-fanout")]
struct Args {
    /// The PostgreSQL server to use (a database of the benchmark's own is created on it).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Due integrations.
    #[arg(long, default_value_t = 100_000)]
    integrations: u64,
    /// Integrations per transaction of the fan-out.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// The benchmark's database (dropped first if it exists).
    #[arg(long, default_value = "tributary_bench_fanout")]
    database: String,
    /// Keep the database afterwards.
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tributary::runtime::init_tracing("warn");
    let args = Args::parse();
    let figures = bench::fan_out(&FanOutBench {
        database_url: args.database_url,
        database: args.database,
        integrations: args.integrations,
        batch_size: args.batch,
        keep: args.keep,
    })
    .await
    .context("the fan-out benchmark failed")?;
    let f = &figures.fan_out;
    println!("fan-out of one tick, postgres queue");
    println!("  integrations due     {}", figures.integrations);
    println!("  batch size           {}", args.batch);
    println!(
        "  setup                {:.2} s",
        figures.setup.as_secs_f64()
    );
    println!("  fan-out time         {:.3} s", f.elapsed.as_secs_f64());
    println!("  check runs created   {}", f.runs_created);
    println!("  messages sent        {}", f.messages_sent);
    println!(
        "  integrations/s       {:.0}",
        figures.integrations_per_second()
    );
    println!(
        "  same tick again      {:.3} s, {} runs created",
        figures.repeat.elapsed.as_secs_f64(),
        figures.repeat.runs_created
    );
    println!(
        "  in the database      {} runs, {} queued messages",
        figures.runs_in_database, figures.messages_in_queue
    );
    Ok(())
}
