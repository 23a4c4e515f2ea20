"""Authorization: may this principal do this to that experiment or registered model?"""
