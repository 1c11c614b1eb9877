"""One message through compiled filters: context, rules, actions, variables, plan."""
