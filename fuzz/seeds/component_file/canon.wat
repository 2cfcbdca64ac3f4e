(component
  (core func (;0;) (canon waitable-set.new))
)
