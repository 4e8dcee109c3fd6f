//! The pod's labels, from the downward API file the injector mounts (`key="value"` per line,
//! the value quoted as Go's `strconv.Quote` does).

use std::collections::BTreeMap;
use std::path::Path;

/// Largest labels file read (the API server caps all labels of an object at 256 KiB).
const MAX_LABELS_FILE: u64 = 256 * 1024;

/// The labels file could not be used; without labels no `workloadSelector` can be matched.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    /// The file could not be read.
    #[error("pod labels file {path}: cannot be read")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any labels file can be.
    #[error("pod labels file {path}: larger than {MAX_LABELS_FILE} bytes")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// A line is not `key="value"`.
    #[error("pod labels file {path}, line {line}: expected key=\"value\"")]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
    },
}

/// Reads and parses the labels file.
pub fn read(path: &Path) -> Result<BTreeMap<String, String>, LabelsError> {
    let shown = path.display().to_string();
    let read_error = |source| LabelsError::Read {
        path: shown.clone(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_LABELS_FILE {
        return Err(LabelsError::TooLarge { path: shown });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    parse(&text).map_err(|line| LabelsError::Syntax { path: shown, line })
}

/// Parses the file's text; the error is the 1-based number of the first bad line.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, usize> {
    let mut labels = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (key, quoted) = line.split_once('=').ok_or(index + 1)?;
        let value = unquote(quoted).ok_or(index + 1)?;
        if key.is_empty() {
            return Err(index + 1);
        }
        labels.insert(key.to_owned(), value);
    }
    Ok(labels)
}

/// Undoes Go's quoting. Label values are limited to `[A-Za-z0-9._-]`, so only `\"` and `\\`
/// could ever appear; any other escape is refused rather than guessed at.
fn unquote(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut value = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                e @ ('"' | '\\') => value.push(e),
                _ => return None,
            },
            '"' => return None,
            c => value.push(c),
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_downward_api_format() {
        let labels = parse("app=\"api\"\napp.kubernetes.io/part-of=\"shop\"\ntier=\"\"\n");
        let labels = labels.ok();
        let labels = labels.as_ref();
        assert_eq!(
            labels.and_then(|l| l.get("app")).map(String::as_str),
            Some("api")
        );
        assert_eq!(
            labels
                .and_then(|l| l.get("app.kubernetes.io/part-of"))
                .map(String::as_str),
            Some("shop")
        );
        assert_eq!(
            labels.and_then(|l| l.get("tier")).map(String::as_str),
            Some("")
        );
    }

    #[test]
    fn refuses_what_is_not_the_format() {
        assert_eq!(parse("app=\"api\"\napp=api\n"), Err(2));
        assert_eq!(parse("no equals sign\n"), Err(1));
        assert_eq!(parse("=\"x\"\n"), Err(1));
        assert_eq!(parse("a=\"x\\ny\"\n"), Err(1));
        assert_eq!(parse("a=\"x\"y\"\n"), Err(1));
    }
}
