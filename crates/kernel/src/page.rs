//! Pagination of list queries: `page` from 1, `page_size` 1..=100, default 1 and 20, and
//! `page x page_size` at most 10,000: deeper pages cost the database a scan of every row
//! before them, so a client cannot ask for them (a filter or a status narrows a list
//! instead).

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PageRequest {
    page: u32,
    page_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageRequestError {
    #[error("page must be 1 or more, got {0}")]
    Page(u32),
    #[error("page_size must be between 1 and {max}, got {0}", max = PageRequest::MAX_PAGE_SIZE)]
    PageSize(u32),
    #[error(
        "page x page_size must be at most {max}, got {page} x {page_size}; narrow the list with a filter instead",
        max = PageRequest::MAX_DEPTH
    )]
    TooDeep { page: u32, page_size: u32 },
}

impl PageRequest {
    pub const DEFAULT_PAGE_SIZE: u32 = 20;
    pub const MAX_PAGE_SIZE: u32 = 100;
    /// The most rows a client may page through: `page x page_size`.
    pub const MAX_DEPTH: u64 = 10_000;

    pub fn new(page: Option<u32>, page_size: Option<u32>) -> Result<Self, PageRequestError> {
        let page = page.unwrap_or(1);
        let page_size = page_size.unwrap_or(Self::DEFAULT_PAGE_SIZE);
        if page == 0 {
            return Err(PageRequestError::Page(page));
        }
        if page_size == 0 || page_size > Self::MAX_PAGE_SIZE {
            return Err(PageRequestError::PageSize(page_size));
        }
        if u64::from(page) * u64::from(page_size) > Self::MAX_DEPTH {
            return Err(PageRequestError::TooDeep { page, page_size });
        }
        Ok(PageRequest { page, page_size })
    }

    pub fn page(&self) -> u32 {
        self.page
    }

    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    pub fn offset(&self) -> i64 {
        (i64::from(self.page) - 1) * i64::from(self.page_size)
    }

    pub fn limit(&self) -> i64 {
        i64::from(self.page_size)
    }

    pub fn total_pages(&self, total: u64) -> u64 {
        total.div_ceil(u64::from(self.page_size))
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            page: 1,
            page_size: Self::DEFAULT_PAGE_SIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_computes() {
        let p = PageRequest::new(Some(3), Some(10)).unwrap();
        assert_eq!((p.offset(), p.limit()), (20, 10));
        assert_eq!(p.total_pages(0), 0);
        assert_eq!(p.total_pages(21), 3);
        assert_eq!(
            PageRequest::new(None, None).unwrap(),
            PageRequest::default()
        );
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(None, Some(0)).is_err());
        assert!(PageRequest::new(None, Some(101)).is_err());
        assert!(PageRequest::new(None, Some(100)).is_ok());
        assert!(PageRequest::new(Some(100), Some(100)).is_ok());
        assert!(PageRequest::new(Some(500), Some(20)).is_ok());
        assert_eq!(
            PageRequest::new(Some(101), Some(100)),
            Err(PageRequestError::TooDeep {
                page: 101,
                page_size: 100
            })
        );
        assert!(
            PageRequest::new(Some(501), None).is_err(),
            "with the default size"
        );
        assert!(PageRequest::new(Some(u32::MAX), Some(100)).is_err());
    }
}
