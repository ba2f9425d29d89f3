"""Terms: every column a scan computes is a term with a canonical key, inputs and the bars it
needs. Today: the screen language front end (:mod:`.language`) and the function catalogue
(:mod:`.catalog`); evaluation over the panel comes next."""
