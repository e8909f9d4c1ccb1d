//! Closed sets of names (API operations, for example) as enums whose variants are the names.
//!
//! A name matched as a string is a typo waiting to become a silent fall-through; as a variant
//! it is checked by the compiler, and the name each variant stands for is written once.

/// Declares an enum of unit variants named exactly as the names they stand for, with
/// `name()`, `parse(name)`, `ALL` and `Display`.
#[macro_export]
macro_rules! closed_set {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every member, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The name this member stands for.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($variant)),+
                }
            }

            /// The member named `name` exactly.
            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $(stringify!($variant) => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    closed_set! {
        enum Colour { Red, GreenBlue }
    }

    #[test]
    fn names_parse_back_to_their_members() {
        assert_eq!(Colour::GreenBlue.name(), "GreenBlue");
        assert_eq!(Colour::parse("Red"), Some(Colour::Red));
        assert_eq!(Colour::parse("red"), None, "names are exact");
        assert_eq!(Colour::ALL, [Colour::Red, Colour::GreenBlue]);
        for colour in Colour::ALL {
            assert_eq!(Colour::parse(&colour.to_string()), Some(*colour));
        }
    }
}
