# xod stage rules (analysis: ldl).
