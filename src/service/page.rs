//! [`Page`]: one page of a listing, and where the next one starts. The
//! service caps the page size (`--max-page-size`) and decides whether more
//! may follow, so the gRPC layer and the console only encode the answer.

/// One page of a listing (ListSessions, QueryLogs): at most the page size
/// asked for, capped at `--max-page-size`, and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    /// Where the next page starts, when this page is full and more may
    /// follow; `None` on the last page.
    pub next: Option<C>,
}

impl<T, C> Page<T, C> {
    /// The page of `items` read with a page size of `size`: when it is
    /// full, the next page starts where `next` says, from its last item.
    pub fn new(items: Vec<T>, size: usize, next: impl FnOnce(&T) -> C) -> Self {
        let next = match items.last() {
            Some(last) if items.len() >= size => Some(next(last)),
            _ => None,
        };
        Self { items, next }
    }
}

#[cfg(test)]
mod tests {
    use super::Page;

    #[test]
    fn only_a_full_page_says_where_the_next_one_starts() {
        assert_eq!(Page::new(vec![1, 2, 3], 3, |last| *last).next, Some(3));
        assert_eq!(Page::new(vec![1, 2], 3, |last| *last).next, None);
        assert_eq!(Page::new(Vec::<u8>::new(), 0, |last| *last).next, None);
    }
}
