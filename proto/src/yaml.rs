//! Strict YAML loading for every file a person writes: node configs, cloud profiles, playbooks.
//!
//! Errors name the file, the field (as a dotted path) and, where the parser knows it, the line.
//! Unknown fields are rejected by the types themselves (`#[serde(deny_unknown_fields)]`).

use std::path::Path;

use serde::de::DeserializeOwned;

/// Why a YAML file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum YamlError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// The YAML is malformed or does not fit the expected shape.
    #[error("{path}: {field}{message}")]
    Parse {
        path: String,
        /// `field `name`: ` when a field is at fault, empty otherwise.
        field: String,
        /// The parser's message (with line and column where known).
        message: String,
    },
    /// The YAML parses but a value is not acceptable.
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        path: String,
        /// The dotted field path.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl YamlError {
    /// An [`YamlError::Invalid`] for `field` of the file at `path`.
    pub fn invalid(path: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.display().to_string(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Reads and parses the YAML file at `path` into `T`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, YamlError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| YamlError::Read { path: path.display().to_string(), source })?;
    parse(&text, path)
}

/// Parses `text` as the contents of the file `path` (used only in messages).
pub fn parse<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, YamlError> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let field = err.path().to_string();
        let mut message = err.into_inner().to_string();
        // The YAML parser repeats the field path itself in some messages.
        if let Some(rest) = message.strip_prefix(&format!("{field}: ")) {
            message = rest.to_string();
        }
        let field = if field == "." || field.is_empty() {
            String::new()
        } else {
            format!("field `{field}`: ")
        };
        YamlError::Parse { path: path.display().to_string(), field, message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
    }

    fn message(text: &str) -> String {
        parse::<Outer>(text, Path::new("x.yaml")).unwrap_err().to_string()
    }

    #[test]
    fn names_the_file_and_the_nested_field() {
        let msg = message("name: a\ninner:\n  port: 70000\n");
        assert!(msg.starts_with("x.yaml: field `inner.port`:"), "{msg}");
        let msg = message("name: a\ninner:\n  port: 1\n  colour: red\n");
        assert!(msg.contains("unknown field `colour`"), "{msg}");
        let msg = message("name: [\n");
        assert!(msg.starts_with("x.yaml: "), "{msg}");
    }
}
