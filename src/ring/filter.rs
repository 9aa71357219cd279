//! What a subscriber wants of a ring: a tag filter, a set of tags and a
//! predicate over the message, checked before the message is copied out
//! (see `Consumer::try_recv_filtered`). A message they turn down is
//! skipped as if read: a back-pressure cursor moves past it, so a
//! filtering subscriber never holds its publisher back for messages it
//! does not want.

use super::MessageInfo;

/// Most tags a [`Filter`]'s tag set holds.
pub const MAX_FILTER_TAGS: usize = 64;

/// A predicate over a message: its info and its payload (in place on a
/// back-pressure ring; on an overwrite ring, a copy whose validity the
/// receive checks after the predicate has run, discarding what a torn
/// read showed it). `true` keeps the message.
pub type Predicate = Box<dyn FnMut(&MessageInfo, &[u8]) -> bool + Send>;

/// Which messages a subscription keeps. The default keeps all.
#[derive(Default)]
pub struct Filter {
    /// Keep a message when `tag & mask == value`.
    mask: u64,
    value: u64,
    /// Keep a message whose tag is one of these (sorted), if any.
    tags: Vec<u64>,
    /// Keep a message the predicate accepts, if one is set.
    predicate: Option<Predicate>,
}

/// Why a filter was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// `value` has bits outside `mask`: no tag could match.
    #[error("tag value {value:#x} has bits outside mask {mask:#x}: no tag could match")]
    ValueOutsideMask {
        /// The mask.
        mask: u64,
        /// The value.
        value: u64,
    },
    /// More tags than [`MAX_FILTER_TAGS`].
    #[error("a tag set holds at most {MAX_FILTER_TAGS} tags, {0} given")]
    TooManyTags(usize),
}

impl Filter {
    /// Keeps the messages whose `tag & mask == value` (and that the other
    /// conditions keep).
    ///
    /// # Errors
    /// [`FilterError::ValueOutsideMask`].
    pub fn set_tag_mask(&mut self, mask: u64, value: u64) -> Result<(), FilterError> {
        if value & !mask != 0 {
            return Err(FilterError::ValueOutsideMask { mask, value });
        }
        self.mask = mask;
        self.value = value;
        Ok(())
    }

    /// Keeps the messages whose tag is one of `tags` (empty: any tag).
    ///
    /// # Errors
    /// [`FilterError::TooManyTags`].
    pub fn set_tags(&mut self, tags: &[u64]) -> Result<(), FilterError> {
        if tags.len() > MAX_FILTER_TAGS {
            return Err(FilterError::TooManyTags(tags.len()));
        }
        let mut t = tags.to_vec();
        t.sort_unstable();
        t.dedup();
        self.tags = t;
        Ok(())
    }

    /// Keeps the messages `predicate` accepts (`None`: drops the
    /// predicate).
    pub fn set_predicate(&mut self, predicate: Option<Predicate>) {
        self.predicate = predicate;
    }

    /// Whether this filter keeps every message.
    pub fn keeps_all(&self) -> bool {
        self.mask == 0 && self.tags.is_empty() && self.predicate.is_none()
    }

    /// Whether the tag conditions keep a message tagged `tag`.
    #[inline]
    pub fn keeps_tag(&self, tag: u64) -> bool {
        tag & self.mask == self.value && (self.tags.is_empty() || self.tags.contains(&tag))
    }

    /// The predicate, if one is set.
    pub(crate) fn predicate(&mut self) -> Option<&mut Predicate> {
        self.predicate.as_mut()
    }
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("mask", &format_args!("{:#x}", self.mask))
            .field("value", &format_args!("{:#x}", self.value))
            .field("tags", &self.tags)
            .field("predicate", &self.predicate.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_conditions() {
        let mut f = Filter::default();
        assert!(f.keeps_all() && f.keeps_tag(12345));
        f.set_tag_mask(0xff00, 0x0100).unwrap();
        assert!(f.keeps_tag(0x0100) && f.keeps_tag(0x01ff) && !f.keeps_tag(0x0200));
        f.set_tags(&[0x0105, 0x0107, 0x0200]).unwrap();
        assert!(f.keeps_tag(0x0105) && !f.keeps_tag(0x0106) && !f.keeps_tag(0x0200));
        assert_eq!(
            f.set_tag_mask(0x0f, 0x10),
            Err(FilterError::ValueOutsideMask {
                mask: 0x0f,
                value: 0x10
            })
        );
        assert_eq!(f.set_tags(&[0; 65]), Err(FilterError::TooManyTags(65)));
        assert!(!f.keeps_all());
    }
}
