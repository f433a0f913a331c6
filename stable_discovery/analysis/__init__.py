"""Learning from screening: statistics per traced value (:mod:`.stats`, :mod:`.plot`),
learned weights (:mod:`.learn`) and the refined next template (:mod:`.refine`)."""
