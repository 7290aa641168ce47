"""The defaults of ``unitscope describe``, in one place and without imports (the CLI reads them at start-up)."""

LAMBDA = 0.2  # MILAN's weight of the prior p(d) (Hernandez et al. 2022)
BEAM = 10  # Mu & Andreas search with 5-10; 5 loses (red AND car) OR tree to OR-pairs at step 2
LENGTH = 3  # concepts per formula at most
MIN_GAIN = 0.01  # a longer formula must raise the exemplar IoU by this much (else the shorter stays)
EXEMPLARS = 15  # MILAN's top-15 images per unit
QUANTILE = 0.99  # MILAN's mask: activations above the unit's 0.99 quantile
DRAWS = 20  # random pairings of held-out images behind each p-value
HELD_OUT_EVERY = 5  # every fifth position is held out for scoring
WORKING_SIDE = 56  # concept masks are searched and scored at most 56 px a side (224-px images: 4 px a cell)
PRIOR_UNITS = 256  # p(d) is estimated on at most this many units of a layer (each unit's own fit is added)
VALIDATE_TOP = 1  # choose among this many top-PMI candidates by validation F1 (1: the best PMI, MILAN's rule)
