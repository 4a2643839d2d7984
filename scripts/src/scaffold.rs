//! `scripts/new-integration NAME`: writes a compiling integration — settings type, streams,
//! `process_stream`, wire types, a fake platform on the testkit's server, and a test file that runs
//! the conformance suite — and registers it. The templates are in `scripts/templates/integration/`;
//! `docs/writing-an-integration.md` walks from there to a merged platform.

use std::fs;
use std::path::{Path, PathBuf};

/// The names one platform goes by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `acme-forum`: as stored in `integrations.platform`.
    pub platform: String,
    /// `acme_forum`: the module and test file.
    pub module: String,
    /// `AcmeForum`: the prefix of its types.
    pub type_prefix: String,
    /// `Acme Forum`: in prose.
    pub title: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "`{0}` is not a platform name: use lowercase letters, digits and single hyphens, starting with a letter (e.g. `acme-forum`)"
    )]
    InvalidName(String),
    #[error("{0} exists already: the platform `{1}` has an integration")]
    Exists(PathBuf, String),
    #[error("{0} has no `register_all` to add the integration to")]
    NoRegistry(PathBuf),
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Names {
    pub fn parse(name: &str) -> Result<Self, ScaffoldError> {
        let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
            && !name.ends_with('-')
            && !name.contains("--")
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid || name.len() > 40 {
            return Err(ScaffoldError::InvalidName(name.to_owned()));
        }
        let words: Vec<&str> = name.split('-').collect();
        let capital = |w: &str| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        };
        Ok(Self {
            platform: name.to_owned(),
            module: words.join("_"),
            type_prefix: words.iter().map(|w| capital(w)).collect(),
            title: words
                .iter()
                .map(|w| capital(w))
                .collect::<Vec<_>>()
                .join(" "),
        })
    }

    fn fill(&self, template: &str) -> String {
        template
            .replace("{{platform}}", &self.platform)
            .replace("{{module}}", &self.module)
            .replace("{{Type}}", &self.type_prefix)
            .replace("{{Title}}", &self.title)
            .replace(
                "{{base_url}}",
                &format!("https://api.{}.example", self.platform),
            )
    }
}

const TEMPLATES: [(&str, &str); 5] = [
    (
        "mod.rs",
        include_str!("../templates/integration/mod.rs.tmpl"),
    ),
    (
        "settings.rs",
        include_str!("../templates/integration/settings.rs.tmpl"),
    ),
    (
        "api.rs",
        include_str!("../templates/integration/api.rs.tmpl"),
    ),
    (
        "fake.rs",
        include_str!("../templates/integration/fake.rs.tmpl"),
    ),
    (
        "test",
        include_str!("../templates/integration/test.rs.tmpl"),
    ),
];

/// The files of a new integration, relative to the workspace root.
pub fn render(names: &Names) -> Vec<(PathBuf, String)> {
    TEMPLATES
        .iter()
        .map(|(file, template)| {
            let path = if *file == "test" {
                PathBuf::from(format!("integrations/tests/{}.rs", names.module))
            } else {
                PathBuf::from(format!("integrations/src/{}/{file}", names.module))
            };
            (path, names.fill(template))
        })
        .collect()
}

/// `integrations/src/lib.rs` with the integration declared, re-exported and registered.
pub fn register(lib_rs: &str, names: &Names) -> Option<String> {
    let Names {
        module,
        type_prefix,
        ..
    } = names;
    let mut out = String::with_capacity(lib_rs.len() + 200);
    let mut registered = false;
    let mut declared = false;
    for line in lib_rs.lines() {
        if !declared && line.starts_with("pub mod ") && line > format!("pub mod {module};").as_str()
        {
            out.push_str(&format!("pub mod {module};\n"));
            declared = true;
        }
        if line.starts_with("use tributary::Registry;") && !declared {
            out.push_str(&format!("pub mod {module};\n\n"));
            declared = true;
        }
        if line.trim() == "Ok(())" && !registered {
            out.push_str(&format!(
                "    registry.register({module}::{type_prefix}Integration)?;\n"
            ));
            registered = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    (registered && declared).then_some(out)
}

/// Writes the integration under `root` (the workspace) and registers it. Refuses to overwrite.
pub fn write(root: &Path, names: &Names) -> Result<Vec<PathBuf>, ScaffoldError> {
    let folder = root.join("integrations/src").join(&names.module);
    if folder.exists() {
        return Err(ScaffoldError::Exists(folder, names.platform.clone()));
    }
    let lib = root.join("integrations/src/lib.rs");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ScaffoldError::Io { path, source }
    };
    let lib_rs = fs::read_to_string(&lib).map_err(io(&lib))?;
    let registered =
        register(&lib_rs, names).ok_or_else(|| ScaffoldError::NoRegistry(lib.clone()))?;
    let files = render(names);
    for (relative, _) in &files {
        if root.join(relative).exists() {
            return Err(ScaffoldError::Exists(
                root.join(relative),
                names.platform.clone(),
            ));
        }
    }
    fs::create_dir_all(&folder).map_err(io(&folder))?;
    let mut written = Vec::new();
    for (relative, contents) in files {
        let path = root.join(&relative);
        fs::write(&path, contents).map_err(io(&path))?;
        written.push(relative);
    }
    fs::write(&lib, registered).map_err(io(&lib))?;
    written.push(PathBuf::from("integrations/src/lib.rs"));
    format(root, &written);
    Ok(written)
}

/// Formats what was written the way `cargo fmt` would (line widths depend on the names), when
/// `rustfmt` is there; `cargo fmt` later does the same otherwise.
fn format(root: &Path, files: &[PathBuf]) {
    let status = std::process::Command::new("rustfmt")
        .arg("--edition=2024")
        .args(files.iter().map(|f| root.join(f)))
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("note: rustfmt did not run; `cargo fmt` formats the new files");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_are_derived_and_bad_ones_refused() {
        let names = Names::parse("acme-forum2").unwrap();
        assert_eq!(names.module, "acme_forum2");
        assert_eq!(names.type_prefix, "AcmeForum2");
        assert_eq!(names.title, "Acme Forum2");
        for bad in ["", "Acme", "2fa", "a--b", "a-", "a_b", "a b"] {
            assert!(Names::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registration_declares_exports_and_registers_once() {
        let lib = "pub mod devto;\npub mod zulip;\n\nuse tributary::Registry;\n\npub fn register_all(registry: &mut Registry) -> Result<(), E> {\n    registry.register(A)?;\n    Ok(())\n}\n";
        let out = register(lib, &Names::parse("acme").unwrap()).unwrap();
        assert_eq!(
            out,
            "pub mod acme;\npub mod devto;\npub mod zulip;\n\nuse tributary::Registry;\n\npub fn register_all(registry: &mut Registry) -> Result<(), E> {\n    registry.register(A)?;\n    registry.register(acme::AcmeIntegration)?;\n    Ok(())\n}\n"
        );
        assert!(register("fn nothing() {}", &Names::parse("acme").unwrap()).is_none());
    }
}
