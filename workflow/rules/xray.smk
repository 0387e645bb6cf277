# xray stage rules (analysis: ldl).
