# ldl stage rules (analysis: ldl).
