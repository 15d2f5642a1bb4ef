//! `agent-farm demo`: a sample repository, a four-domain plan and the simulated agent, run
//! end to end. Needs no network and no API key.

use std::path::{Path, PathBuf};

use git2::Repository;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Create the demo repository in DIR (relative to `-C`, if given) instead of a new
    /// temporary directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Progress display: auto, plain or none.
    #[arg(long, default_value = "auto", value_name = "MODE")]
    pub progress: super::run::Progress,
}

const PLAN: &str = r#"version: 1
max_parallel: 3
agent:
  preset: sim
  timeout: 1m
verify: test -f src/db/schema.sql && test -f src/api/users.rs && grep -q users src/api/users.rs
domains:
  - name: db
    priority: 2
    owns: ["src/db/**"]
    prompt: |
      Create the users table.
      ```sim
      print designing the schema
      sleep 1s
      write src/db/schema.sql CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
      ```
  - name: api
    depends_on: [db]
    owns: ["src/api/**"]
    prompt: |
      Add a users endpoint on top of the schema from the db domain.
      ```sim
      print reading src/db/schema.sql
      sleep 1s
      write src/api/users.rs // serves the users table defined in src/db/schema.sql\npub fn list_users() -> Vec<String> { Vec::new() }
      ```
  - name: ui
    owns: ["src/ui/**"]
    prompt: |
      Build the users page.
      ```sim
      sleep 2s
      write src/ui/users.html <h1>Users</h1>
      ```
  - name: docs
    owns: ["docs/**"]
    prompt: |
      Document the users feature.
      ```sim
      sleep 1500ms
      write docs/users.md # Users\n\nThe users page lists every user.
      ```
"#;

fn write(root: &Path, rel: &str, text: &str) -> std::io::Result<()> {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(p, text)
}

/// Create the sample repository with one commit on `main`.
pub fn create_repo(root: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(root)?;
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = Repository::init_opts(root, &opts)?;
    write(
        root,
        "README.md",
        "# demo shop\n\nA sample repository for the agent-farm demo.\n",
    )?;
    write(root, "src/db/.keep", "")?;
    write(root, "src/api/mod.rs", "// API handlers\n")?;
    write(root, "src/ui/index.html", "<h1>Shop</h1>\n")?;
    write(root, "docs/index.md", "# Docs\n")?;
    write(root, ".gitignore", "target/\n")?;
    write(root, "farm.yaml", PLAN)?;
    let mut index = repo.index()?;
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let (author, committer) = crate::git::signatures(&repo)?;
    repo.commit(
        Some("HEAD"),
        &author,
        &committer,
        "initial commit",
        &tree,
        &[],
    )?;
    Ok(())
}

/// `-C DIR demo` is `demo` started in DIR: like every relative path, `--dir` is taken from
/// there; without `--dir` the demo goes into a new temporary directory wherever it is started.
pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    let root = match args.dir {
        Some(d) => cwd.join(d),
        None => tempfile::Builder::new()
            .prefix("agent-farm-demo-")
            .tempdir()?
            .keep(),
    };
    if root.join(".git").exists() {
        anyhow::bail!(crate::error::PreflightError::DirHoldsRepo { path: root });
    }
    create_repo(&root).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the demo repository in {}: {e}",
            root.display()
        )
    })?;
    let quiet = super::conventions::quiet();
    if !quiet {
        println!("demo repository: {}", root.display());
        println!("plan: {}\n", root.join("farm.yaml").display());
    }
    let reporters = super::run::reporters(args.progress);
    let mut session =
        crate::session::Session::start(&root, &crate::session::RunRequest::default(), reporters)?;
    session.drive();
    let outcome = session.conclude();
    let code = super::run::render_report(&outcome, false, false);
    if !quiet {
        println!("\nthe merged result is on `main` in {}", root.display());
        println!(
            "look at it with: git -C {} log --graph --oneline --all",
            root.display()
        );
    }
    super::run::print_html_report(&outcome, false);
    Ok(code)
}
